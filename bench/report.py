"""What `make bench` shows of its JSON: the README tables, the block they sit in, the chart.

Pure functions of the JSON (bench.py writes it), so the README never holds a hand-typed
figure and tests/test_bench_report.py can check the rendering without running anything."""

import re
import textwrap

# Columns, in the order of the table: microsmtp on both runtimes, then the references.
CLIENTS = ("mp_ram", "mp_rom", "mp_aio", "cpython", "smtplib", "aiosmtplib", "smtp_source")
HEADERS = {
    "mp_ram": "microsmtp, MicroPython .mpy in RAM",
    "mp_rom": "microsmtp, MicroPython ROMFS",
    "mp_aio": "microsmtp.aio, MicroPython .mpy in RAM",
    "cpython": "microsmtp, CPython",
    "smtplib": "smtplib",
    "aiosmtplib": "aiosmtplib",
    "smtp_source": "smtp-source (C)",
}

# Rows: (label, path into a client's figures, format). A missing or null figure is a dash,
# unless the client's "notes" say why (keyed by the path's last part).
ROWS = (
    ("ms/message (1 KB), a new connection each", ("ms_per_message", "new_connection"), "ms"),
    ("ms/message (1 KB), one session", ("ms_per_message", "one_session"), "ms"),
    ("round trips/message, a new connection each", ("round_trips", "new_connection"), "rt"),
    ("round trips/message, one session", ("round_trips", "one_session"), "rt"),
    ("MB/s, 10 MB body from a file", ("mb_per_s", "10mb"), "rate"),
    ("bytes allocated per message, 1 KB body", ("alloc_bytes", "1kb"), "bytes"),
    ("bytes allocated per message, 1 MB body", ("alloc_bytes", "1mb"), "bytes"),
    ("ms/message, 1 KB alert + 100 KB attachment", ("ms_per_message", "attach_100kb"), "ms"),
    ("bytes allocated, 1 KB alert + 100 KB attachment", ("alloc_bytes", "attach_100kb"),
     "bytes"),
    ("heap held by `import microsmtp`", ("heap_bytes", "import"), "bytes"),
    ("heap held by a Client", ("heap_bytes", "client"), "bytes"),
    ("smallest `-X heapsize`, plain 1 KB send", ("min_heapsize_kb", "plain_1kb"), "kb"),
    ("smallest `-X heapsize`, AUTH PLAIN 100 KB send", ("min_heapsize_kb", "auth_100kb"), "kb"),
    (".mpy bytes, plain path", ("mpy_bytes", "plain_path"), "bytes"),
    (".mpy bytes, whole package", ("mpy_bytes", "package"), "bytes"),
)

# Section 6's table: the smallest heaps, code in flash beside .mpy in RAM.
MEMORY_ROWS = (
    ("plain 1 KB send, no AUTH", "plain_1kb"),
    ("AUTH PLAIN, 100 KB body (LAN relay)", "auth_100kb"),
    ("STARTTLS + certificate check (ECDSA P-256 chain) + AUTH PLAIN, 100 KB body",
     "starttls_auth_100kb"),
)

# Issue 10's reach, on the unix port with the .mpy files in RAM (what `mip install` and
# `deploy --mpy` give a board): (label, path, format, target, how the figure compares).
# "max": at most the target; "min": at least; "ratio": at most target x smtp-source's
# figure; "within": at most (1 + target) x the 1 KB body's allocation.
TARGETS = (
    ("bytes allocated per 1 KB alert", ("alloc_bytes", "1kb"), "bytes", 3072, "max"),
    ("bytes allocated, 1 MB file body", ("alloc_bytes", "1mb"), "bytes", 0.10, "within"),
    ("heap held by `import microsmtp`", ("heap_bytes", "import"), "bytes", 20480, "max"),
    ("smallest `-X heapsize`, plain 1 KB send", ("min_heapsize_kb", "plain_1kb"), "kb", 32,
     "max"),
    ("smallest `-X heapsize`, AUTH PLAIN 100 KB send", ("min_heapsize_kb", "auth_100kb"), "kb",
     36, "max"),
    ("ms/message, a new connection each", ("ms_per_message", "new_connection"), "ms", 3,
     "ratio"),
    ("round trips/message, one session (the server pipelines)", ("round_trips", "one_session"),
     "rt", 3.5, "max"),
    ("MB/s, 10 MB body from a file", ("mb_per_s", "10mb"), "rate", 25, "min"),
)

BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"
MEMORY_BEGIN, MEMORY_END = "<!-- bench:memory:begin -->", "<!-- bench:memory:end -->"
TARGETS_BEGIN, TARGETS_END = "<!-- bench:targets:begin -->", "<!-- bench:targets:end -->"
IMPORT_BEGIN, IMPORT_END = "<!-- bench:import:begin -->", "<!-- bench:import:end -->"


def fmt(value, kind):
    """One figure as the README shows it: 3 significant digits for times, exact bytes."""
    if kind == "bytes":
        return "{:,}".format(value).replace(",", " ") + " B"
    if kind == "kb":
        return "%dK" % value
    if kind == "rt":
        return "%.1f" % value
    return "%d" % round(value) if value >= 1000 else "%.3g" % value  # ms, MB/s


def figure(client, path):
    value = client
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value


def cell(client, path, kind):
    value = figure(client, path)
    if value is None:
        return client.get("notes", {}).get(path[-1], "–")
    return fmt(value, kind)


def table(data):
    """The side-by-side markdown table of every figure of every client."""
    clients = data["clients"]
    cols = [k for k in CLIENTS if k in clients]
    lines = ["| | " + " | ".join(HEADERS[k] for k in cols) + " |",
             "|---|" + "---|" * len(cols)]
    for label, path, kind in ROWS:
        cells = [cell(clients[k], path, kind) for k in cols]
        lines.append("| %s | %s |" % (label, " | ".join(cells)))
    return "\n".join(lines)


def machine_line(data):
    m = data["machine"]
    code = "commit %s" % m["commit"] if m.get("commit") else "no git commit"
    if m.get("dirty"):
        code += " plus uncommitted changes to firmware/, host/ or bench/"
    return ("%s, %s; %d cores; CPython %s, MicroPython %s, Postfix %s, aiosmtplib %s; %s."
            % (data["date"], m["platform"], m["nproc"], m["python"], m["micropython"],
               m["postfix"], m["aiosmtplib"], code))


def bench_block(data):
    """What goes between README's bench markers in section 6."""
    prose = ("Measured " + machine_line(data) + " How each figure is made: "
             "`build/bench.json`, key `methods`.")
    return "\n".join([table(data), "", textwrap.fill(prose, 92, break_on_hyphens=False)])


def memory_block(data):
    """What goes between the memory markers in section 4: the smallest heaps."""
    clients = data["clients"]
    lines = ["| smallest `-X heapsize` (1 KB steps) | .mpy in RAM | code in flash (ROMFS) |",
             "|---|---|---|"]
    for label, key in MEMORY_ROWS:
        lines.append("| %s | %s | %s |" % (
            label, cell(clients["mp_ram"], ("min_heapsize_kb", key), "kb"),
            cell(clients["mp_rom"], ("min_heapsize_kb", key), "kb")))
    return "\n".join(lines)


def import_block(data):
    """Section 6's table of the heap each module's import holds, .mpy in RAM first: where
    the package's import heap goes. The modules of a plain send first, then the ones loaded
    only when used; __init__ is the package's import minus its modules' (the rest)."""
    clients = data["clients"]
    ram = clients.get("mp_ram", {})
    rom = clients.get("mp_rom", {})
    files = ram.get("mpy_bytes", {}).get("files", {})
    plain = ram.get("mpy_bytes", {}).get("plain_path_modules", [])
    lines = ["| module | .mpy bytes | heap, .mpy in RAM | heap, code in flash (ROMFS) |",
             "|---|---|---|---|"]

    def held(client, name):
        mods = client.get("heap_bytes", {}).get("modules", {})
        if name != "__init__":
            return mods.get(name)
        total = client.get("heap_bytes", {}).get("import")
        others = [mods.get(m) for m in plain if m != "__init__"]
        if total is None or None in others:
            return None
        return total - sum(others)

    def add(label, name):
        size = files.get(name)
        lines.append("| %s | %s | %s | %s |" % (
            label, "–" if size is None else fmt(size, "bytes"),
            *("–" if v is None else fmt(v, "bytes") for v in (held(ram, name),
                                                              held(rom, name)))))

    for name in ["__init__"] + sorted(m for m in plain if m != "__init__"):
        add("`%s`" % name, name)
    lines.append("| **a plain send's import** | %s | %s | %s |" % (
        fmt(sum(files.get(m, 0) for m in plain), "bytes") if files else "–",
        cell(ram, ("heap_bytes", "import"), "bytes"),
        cell(rom, ("heap_bytes", "import"), "bytes")))
    for name in sorted(set(files) - set(plain)):
        if name == "aio":  # it needs the package's __init__ and asyncio: §6's own column
            size = files.get(name)
            lines.append("| `aio` (imported by asyncio apps) | %s | with asyncio: the "
                         "`microsmtp.aio` column of §6 | – |" % fmt(size, "bytes"))
            continue
        add("`%s` (loaded when used)" % name, name)
    return "\n".join(lines)


def target_row(data, label, path, kind, target, how):
    """One row of targets_block: the figure, the target, and met or missed by how much."""
    clients = data["clients"]
    mp = clients.get("mp_ram", {})
    value = figure(mp, path)
    if how == "ratio":
        base = figure(clients.get("smtp_source", {}), path)
        limit = target * base if base else None
        want = "≤ %g × smtp-source's (%s)" % (target, fmt(limit, kind) if limit else "–")
    elif how == "within":
        base = figure(mp, ("alloc_bytes", "1kb"))
        limit = base * (1 + target) if base else None
        want = "within %d %% of the 1 KB body's" % round(target * 100)
    else:
        limit = target
        want = ("≥ " if how == "min" else "≤ ") + fmt(target, kind)
    if value is None or limit is None:
        return "| %s | %s | – | not measured |" % (label, want)
    ok = value >= limit if how == "min" else value <= limit
    if ok:
        verdict = "met"
    elif how == "min":
        verdict = "missed: %.2g× short" % (limit / value)
    else:
        verdict = "missed: %.2g× over" % (value / limit)
    return "| %s | %s | %s | %s |" % (label, want, fmt(value, kind), verdict)


def targets_block(data):
    """Section 6's table of issue 10's targets against what this run measured."""
    lines = ["| issue 10's target (64-bit unix port, .mpy in RAM) | target | measured | |",
             "|---|---|---|---|"]
    lines += [target_row(data, *t) for t in TARGETS]
    return "\n".join(lines)


def replace_block(text, begin, end, block):
    """text with what lies between the begin and end marker lines replaced by block,
    indented as the begin marker is (a block inside a list item stays in it)."""
    pattern = re.compile(r"^([ \t]*)" + re.escape(begin) + r"\n.*?^[ \t]*" + re.escape(end),
                         re.S | re.M)
    if len(pattern.findall(text)) != 1:
        raise ValueError("README must hold %s ... %s exactly once" % (begin, end))

    def fill(match):
        pad = match.group(1)
        lines = [pad + line if line else "" for line in block.split("\n")]
        return "\n".join([pad + begin, *lines, pad + end])

    return pattern.sub(fill, text)


def update_readme(text, data):
    """README text with the four generated blocks rewritten from data."""
    text = replace_block(text, BEGIN, END, bench_block(data))
    text = replace_block(text, TARGETS_BEGIN, TARGETS_END, targets_block(data))
    text = replace_block(text, IMPORT_BEGIN, IMPORT_END, import_block(data))
    return replace_block(text, MEMORY_BEGIN, MEMORY_END, memory_block(data))


MS_PANEL = "ms/message ÷ smtp-source's"
MEMORY_PANEL = "MicroPython memory ratios"
LOG_PANELS = (MS_PANEL, MEMORY_PANEL)


def ratios(data):
    """The chart's bars: {panel title: {group label: {client: ratio}}}."""
    clients = data["clients"]
    have = [k for k in CLIENTS if k in clients]
    mp = [k for k in ("mp_ram", "mp_rom") if k in clients]

    def over(keys, path, base_of):
        out = {}
        for k in keys:
            top, bottom = figure(clients[k], path), base_of(k)
            if top is not None and bottom:
                out[k] = top / bottom
        return out

    def source(path):  # smtp-source's own figure, the C floor
        return lambda k: figure(clients.get("smtp_source", {}), path)

    def rom(path):
        return lambda k: figure(clients["mp_rom"], path)

    panels = {}
    for title, what in ((MS_PANEL, "ms_per_message"),
                        ("round trips/message ÷ smtp-source's", "round_trips")):
        panels[title] = {
            group: over(have, (what, key), source((what, key)))
            for group, key in (("new connection", "new_connection"),
                               ("one session", "one_session"))}
    path = ("mb_per_s", "10mb")
    panels["MB/s (10 MB body) ÷ smtp-source's"] = {"10 MB body": over(have, path, source(path))}
    mem = {"alloc 1 MB\n÷ alloc 1 KB": over(mp, ("alloc_bytes", "1mb"),
                                      lambda k: figure(clients[k], ("alloc_bytes", "1kb")))}
    if "mp_rom" in clients:
        for label, path in (("alloc 1 KB", ("alloc_bytes", "1kb")),
                            ("import heap", ("heap_bytes", "import")),
                            ("heapsize plain", ("min_heapsize_kb", "plain_1kb")),
                            ("heapsize AUTH", ("min_heapsize_kb", "auth_100kb"))):
            mem[label + "\nRAM ÷ ROMFS"] = over(mp, path, rom(path))  # ROMFS's bar: 1
    panels[MEMORY_PANEL] = mem
    return panels


def chart(data, path):
    """A PNG of ratios(data): a panel each, grouped bars, a line at 1, "n/a" where a client
    has no figure (no session API yet)."""
    import matplotlib

    matplotlib.use("Agg")  # no display here; set before pyplot loads a backend
    import matplotlib.pyplot as plt
    import matplotlib.ticker as ticker

    fig, axes = plt.subplots(2, 2, figsize=(13, 9))
    colours = dict(zip(CLIENTS, plt.get_cmap("tab10").colors, strict=False))
    for ax, (title, groups) in zip(axes.flat, ratios(data).items(), strict=False):
        draw_panel(ax, title, groups, colours, ticker)
    handles = {}
    for ax in axes.flat:
        for h, label in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(label, h)
    fig.legend(handles.values(), handles.keys(), loc="lower center", ncol=3, fontsize=8)
    fig.suptitle("make bench, %s (%d cores)" % (data["date"], data["machine"]["nproc"]))
    fig.tight_layout(rect=(0, 0.07, 1, 0.96))
    fig.savefig(path, dpi=100)
    plt.close(fig)


def draw_panel(ax, title, groups, colours, ticker):
    # The same slot for a client in every group of the panel, so a missing bar shows.
    slots = [k for k in CLIENTS if any(k in bars for bars in groups.values())]
    width = 0.8 / max(1, len(slots))
    for i, bars in enumerate(groups.values()):
        for j, client in enumerate(slots):
            x = i - 0.4 + width * (j + 0.5)
            if client in bars:
                ax.bar(x, bars[client], width, color=colours[client], label=HEADERS[client])
                ax.annotate("%.3g" % bars[client], (x, bars[client]), ha="center",
                            va="bottom", fontsize=7)
            else:
                ax.text(x, 0.03, "n/a", transform=ax.get_xaxis_transform(), ha="center",
                        fontsize=7, rotation=90, color=colours[client])
    ax.axhline(1, color="black", linewidth=0.8)
    ax.set_xticks(range(len(groups)), list(groups), fontsize=8)
    ax.set_title(title, fontsize=10)
    if title in LOG_PANELS:  # ratios from 0.5 to 100s: a log scale keeps both readable
        ax.set_yscale("log")
        ax.yaxis.set_major_locator(ticker.LogLocator(subs=(1, 2, 5)))
        ax.yaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: "%g" % v))
        ax.yaxis.set_minor_formatter(ticker.NullFormatter())
