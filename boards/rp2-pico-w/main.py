# Runs at boot: the alert app (alert_app.py, from boards/common) with this board's sensor
# and Wi-Fi (board.py). `microsmtp deploy --app` copies all three. MIT licence.
import alert_app
import board

alert_app.main(board)
