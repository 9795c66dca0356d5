"""bench/report.py: the README tables are rendered from make bench's JSON, never typed.

Pure functions on a fixed JSON: no server, no timing (tests assert behaviour, the bench
reports numbers)."""

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import report  # noqa: E402

MP = {"ms_per_message": {"new_connection": 1.234}, "round_trips": {"new_connection": 6.66},
      "notes": {"one_session": "n/a (no session API yet)"},
      "mb_per_s": {"10mb": 12.345}, "alloc_bytes": {"1kb": 20744, "1mb": 2261968},
      "heap_bytes": {"import": 38976, "client": 4160,
                     "modules": {"status": 1800, "message": 12000, "protocol": 14000,
                                 "auth": 4100}},
      "min_heapsize_kb": {"plain_1kb": 55, "auth_100kb": 56, "starttls_auth_100kb": 65},
      "mpy_bytes": {"package": 25932, "plain_path": 20668,
                    "plain_path_modules": ["__init__", "message", "protocol", "status"],
                    "files": {"__init__": 5000, "auth": 2100, "message": 8600,
                              "protocol": 7800, "status": 320}}}
DATA = {
    "date": "2026-11-30 12:00 UTC",
    "machine": {"nproc": 2, "platform": "Linux", "python": "3.11.7",
                "micropython": "1.29.0 preview", "postfix": "3.7.11", "aiosmtplib": "5.1.3",
                "commit": "abc1234", "dirty": False},
    "clients": {
        "mp_ram": MP,
        "mp_rom": dict(MP, heap_bytes={"import": 18560, "client": 4160,
                                       "modules": {"status": 900, "message": 5000,
                                                   "protocol": 6000, "auth": 2000}},
                       min_heapsize_kb={"plain_1kb": 32, "auth_100kb": 33,
                                        "starttls_auth_100kb": 43}),
        "smtplib": {"ms_per_message": {"new_connection": 0.683, "one_session": 0.269},
                    "round_trips": {"new_connection": 6.6, "one_session": 4.9},
                    "mb_per_s": {"10mb": 80.5}},
        "smtp_source": {"ms_per_message": {"new_connection": 0.3, "one_session": 0.25},
                        "round_trips": {"new_connection": 6.8, "one_session": 5.1},
                        "mb_per_s": {"10mb": 1234.5}},
    },
}


def row(table, label):
    return next(line for line in table.splitlines() if line.startswith("| " + label + " |"))


def test_table_has_a_column_per_client_in_order():
    head = report.table(DATA).splitlines()[0]
    assert head == ("| | microsmtp, MicroPython .mpy in RAM | microsmtp, MicroPython ROMFS | "
                    "smtplib | smtp-source (C) |")


def test_figures_formatted_notes_and_dashes():
    table = report.table(DATA)
    assert row(table, "ms/message (1 KB), a new connection each").endswith(
        "| 1.23 | 1.23 | 0.683 | 0.3 |")
    assert row(table, "ms/message (1 KB), one session").split(" | ")[1:] == [
        "n/a (no session API yet)", "n/a (no session API yet)", "0.269", "0.25 |"]
    assert row(table, "round trips/message, a new connection each").endswith(
        "| 6.7 | 6.7 | 6.6 | 6.8 |")
    assert row(table, "MB/s, 10 MB body from a file").endswith("| 12.3 | 12.3 | 80.5 | 1234 |")
    assert row(table, "heap held by `import microsmtp`").endswith(
        "| 38 976 B | 18 560 B | – | – |")
    assert row(table, "bytes allocated per message, 1 MB body").endswith(
        "| 2 261 968 B | 2 261 968 B | – | – |")
    assert row(table, "smallest `-X heapsize`, plain 1 KB send").endswith("| 55K | 32K | – | – |")


def test_memory_block_puts_ram_before_flash():
    """.mpy in RAM is how users load the code (stock firmware has no ROMFS): first."""
    block = report.memory_block(DATA)
    assert block.splitlines()[0] == (
        "| smallest `-X heapsize` (1 KB steps) | .mpy in RAM | code in flash (ROMFS) |")
    assert "| plain 1 KB send, no AUTH | 55K | 32K |" in block
    assert "| AUTH PLAIN, 100 KB body (LAN relay) | 56K | 33K |" in block
    assert block.splitlines()[-1].endswith("| 65K | 43K |")


def test_import_block_splits_the_import_heap_by_module():
    block = report.import_block(DATA)
    assert block.splitlines()[0] == (
        "| module | .mpy bytes | heap, .mpy in RAM | heap, code in flash (ROMFS) |")
    # __init__: the package's import minus the plain path's modules
    assert row(block, "`__init__`") == "| `__init__` | 5 000 B | 11 176 B | 6 660 B |"
    assert row(block, "`protocol`") == "| `protocol` | 7 800 B | 14 000 B | 6 000 B |"
    assert row(block, "**a plain send's import**") == (
        "| **a plain send's import** | 21 720 B | 38 976 B | 18 560 B |")
    assert row(block, "`auth` (loaded when used)") == (
        "| `auth` (loaded when used) | 2 100 B | 4 100 B | 2 000 B |")
    labels = [line.split(" | ")[0] for line in block.splitlines()[2:]]
    assert labels == ["| `__init__`", "| `message`", "| `protocol`", "| `status`",
                      "| **a plain send's import**", "| `auth` (loaded when used)"]


def test_import_block_without_module_figures_shows_dashes():
    data = dict(DATA, clients={"mp_ram": {"heap_bytes": {"import": 100}}})
    block = report.import_block(data)
    assert row(block, "**a plain send's import**") == (
        "| **a plain send's import** | – | 100 B | – |")


def test_targets_block_says_met_or_by_how_much_missed():
    block = report.targets_block(DATA)
    assert row(block, "bytes allocated per 1 KB alert") == (
        "| bytes allocated per 1 KB alert | ≤ 3 072 B | 20 744 B | missed: 6.8× over |")
    assert row(block, "bytes allocated, 1 MB file body").endswith("| missed: 99× over |")
    assert row(block, "smallest `-X heapsize`, plain 1 KB send").endswith(
        "| ≤ 32K | 55K | missed: 1.7× over |")
    # 1.234 ms against 3 x smtp-source's 0.3 ms: over by 1.234 / 0.9
    assert row(block, "ms/message, a new connection each") == (
        "| ms/message, a new connection each | ≤ 3 × smtp-source's (0.9) | 1.23 | "
        "missed: 1.4× over |")
    assert row(block, "MB/s, 10 MB body from a file").endswith(
        "| ≥ 25 | 12.3 | missed: 2× short |")
    assert row(block, "round trips/message, one session (the server pipelines)").endswith(
        "| – | not measured |")  # the fixture's MicroPython has no session figure


def test_targets_block_met():
    mp = dict(MP, alloc_bytes={"1kb": 3000, "1mb": 3200}, mb_per_s={"10mb": 30.0},
              round_trips={"one_session": 3.2})
    data = dict(DATA, clients=dict(DATA["clients"], mp_ram=mp))
    block = report.targets_block(data)
    for label in ("bytes allocated per 1 KB alert", "bytes allocated, 1 MB file body",
                  "MB/s, 10 MB body from a file",
                  "round trips/message, one session (the server pipelines)"):
        assert row(block, label).endswith("| met |"), label


def test_replace_block_keeps_everything_outside_the_markers():
    text = "intro\n<!-- a -->\nold\ntable\n<!-- b -->\noutro\n"
    assert report.replace_block(text, "<!-- a -->", "<!-- b -->", "new\n\nrows") == \
        "intro\n<!-- a -->\nnew\n\nrows\n<!-- b -->\noutro\n"


def test_replace_block_indents_as_the_begin_marker_is():
    text = "- item:\n\n  <!-- a -->\n  <!-- b -->\n- next\n"
    assert report.replace_block(text, "<!-- a -->", "<!-- b -->", "| x |\n\n| y |") == \
        "- item:\n\n  <!-- a -->\n  | x |\n\n  | y |\n  <!-- b -->\n- next\n"


@pytest.mark.parametrize("text", ["no markers\n", "<!-- a -->\n<!-- b -->\n<!-- a -->\nx\n"
                                  "<!-- b -->\n"])
def test_replace_block_refuses_missing_or_repeated_markers(text):
    with pytest.raises(ValueError):
        report.replace_block(text, "<!-- a -->", "<!-- b -->", "x")


def test_update_readme_is_idempotent_on_the_real_readme():
    readme = (ROOT / "README.md").read_text()
    once = report.update_readme(readme, DATA)
    assert report.update_readme(once, DATA) == once
    assert report.table(DATA) in once
    assert "\n| plain 1 KB send, no AUTH | 55K | 32K |" in once  # section 6, not indented
    assert "\n| bytes allocated per 1 KB alert | ≤ 3 072 B | 20 744 B |" in once
    assert "\n| `protocol` | 7 800 B | 14 000 B | 6 000 B |" in once
    # only the four blocks change
    outside = [part.split(report.END)[-1] for part in once.split(report.BEGIN)]
    assert outside[-1] == readme.split(report.END)[-1]


def test_ratios_are_over_smtp_source_and_romfs():
    panels = report.ratios(DATA)
    ms = panels[report.MS_PANEL]["new connection"]
    assert ms["smtp_source"] == 1 and ms["mp_ram"] == pytest.approx(1.234 / 0.3)
    assert "mp_ram" not in panels[report.MS_PANEL]["one session"]  # n/a has no bar
    mem = panels[report.MEMORY_PANEL]
    assert mem["import heap\nRAM ÷ ROMFS"] == {"mp_ram": pytest.approx(38976 / 18560),
                                                "mp_rom": 1}
    assert mem["alloc 1 MB\n÷ alloc 1 KB"]["mp_rom"] == pytest.approx(2261968 / 20744)


# --- bench/install_heap.py: README §1's table and docs/DESIGN.md's ------------------------

def _install(files, held, kb):
    return {"files": files, "file_bytes": files * 1000, "held_bytes": held,
            "smallest_heap_kb": kb, "native_alone": {"held_bytes": 1000, "smallest_heap_kb": 9}}


INSTALLS = {"date": "2026-11-30", "micropython": "1.29.0", "commit": "abc1234",
            "installs": {"index": _install(23, 39000, 50), "mpy": _install(12, 38000, 49),
                         "py": _install(12, 45000, 136),
                         "index_native_py": _install(12, 38700, 51)}}


def test_install_heap_writes_each_block_into_its_own_file(tmp_path):
    import install_heap

    readme, design = tmp_path / "README.md", tmp_path / "DESIGN.md"
    readme.write_text((ROOT / "README.md").read_text(encoding="utf-8"), encoding="utf-8")
    design.write_text((ROOT / "docs" / "DESIGN.md").read_text(encoding="utf-8"),
                      encoding="utf-8")
    install_heap.write_blocks(INSTALLS, readme, design)
    once = readme.read_text(encoding="utf-8"), design.read_text(encoding="utf-8")
    install_heap.write_blocks(INSTALLS, readme, design)
    assert (readme.read_text(encoding="utf-8"), design.read_text(encoding="utf-8")) == once
    assert "\n| `microsmtp deploy --mpy` | 12, 12 000 B | 38 000 B | 49K |" in once[0]
    assert "install-design" not in once[0]  # the design's table lives in docs/DESIGN.md
    assert "\n| an index with `native.py` as source (not built) | 12, 12 000 B | 38 700 B " \
           "| 51K |" in once[1]
    assert install_heap.BEGIN not in once[1]
