"use strict";
// The catcher's one renderer. The server sends index.html as a fixed shell and the mail as
// JSON (docs/CATCHER.md); this script builds the list and the message view with DOM calls and
// textContent only, so mail content never becomes markup (the CSP's Trusted Types would
// refuse a string reaching innerHTML anyway). Every URL of a mail comes from the JSON.
// A mail's HTML part is the one thing not drawn here: an <iframe sandbox> loads it from its
// own URL, where the server sends it under a policy that allows no script and no remote load.
(function () {
  var POLL_MS = 1000;  // the list refreshes itself this often
  var ARM_MS = 4000;  // "Delete all" asks for a second click within this time
  var main = document.getElementById("main");
  var info = document.getElementById("info");
  var count = document.getElementById("count");
  var search = document.getElementById("search");
  var clearButton = document.getElementById("clear");
  var tools = document.getElementById("tools");

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) { e.className = cls; }
    if (text !== undefined) { e.textContent = text; }
    return e;
  }

  function link(text, href, cls) {
    var a = el("a", cls, text);
    a.href = href;
    return a;
  }

  function getText(url) {
    return fetch(url, {cache: "no-cache"}).then(function (r) {
      if (r.status === 404) { return null; }
      if (!r.ok) { throw new Error("HTTP " + r.status); }
      return r.text();
    });
  }

  function post(url) {
    return fetch(url, {method: "POST", cache: "no-store"}).then(function (r) {
      if (!r.ok && r.status !== 404) { throw new Error("HTTP " + r.status); }
    });
  }

  function plural(n, word) {
    return n + " " + word + (n === 1 ? "" : "s");
  }

  function marker(priority) {
    if (priority !== "high" && priority !== "low") { return null; }
    var m = el("span", "prio " + priority, priority);
    m.title = priority + " priority";
    return m;
  }

  var BCC_NOTE = "received but not in headers";

  // The To header's addresses; the envelope's when the mail has no To or Cc header at all.
  function shownTo(m) {
    return (m.header_to.length || m.cc.length ? m.header_to : m.to).join(", ");
  }

  function meta(m) {
    var d = el("div", "meta");
    var mark = marker(m.priority);
    if (mark) { d.append(mark, " "); }
    d.append(el("time", "", m.time_text), " ", el("span", "from", m.from), " \u2192 ",
             el("span", "to", shownTo(m)));
    if (m.cc.length) { d.append(" \u00b7 cc ", el("span", "cc", m.cc.join(", "))); }
    if (m.bcc.length) {
      d.append(" \u00b7 bcc ", el("span", "bcc", m.bcc.join(", ")), " ",
               el("span", "note", "(" + BCC_NOTE + ")"));
    }
    if (m.has_html) { d.append(" ", el("span", "badge", "HTML")); }
    return d;
  }

  function attachments(m) {
    var ul = el("ul", "attachments");
    var inline = {};
    m.inline_images.forEach(function (i) { inline[i.attachment] = true; });
    m.attachments.forEach(function (f, n) {
      var li = el("li"), a = link(f.filename, f.url);
      a.setAttribute("download", "");
      li.append(a, " (" + f.content_type + ", " + f.size + " bytes" +
                (inline[n] ? ", inline image of the HTML part" : "") + ")");
      ul.append(li);
    });
    return ul;
  }

  // The HTML part: sandboxed with every flag off (no scripts, no same origin, no forms, no
  // popups, no top navigation); its URL's own policy blocks every load but inline images.
  function htmlPart(m) {
    var frame = el("iframe", "html");
    frame.setAttribute("sandbox", "");
    frame.title = "HTML part of the mail";
    frame.src = m.html_url;
    return frame;
  }

  function deleteButton(m, then) {
    var b = el("button", "delete", "Delete");
    b.type = "button";
    b.addEventListener("click", function () {
      b.disabled = true;
      post(m.delete_url).then(then).catch(function (e) {
        b.disabled = false;
        count.textContent = "delete failed: " + e.message;
      });
    });
    return b;
  }

  // --- the list: polled, searched, one article per mail

  var last = null, timer = null, generation = 0;

  function listItem(m) {
    var a = el("article", "msg prio-" + m.priority);
    a.dataset.key = m.key;
    var h = el("h2", "subject");
    h.append(link(m.subject || "(no subject)", m.url));
    a.append(meta(m), h, el("pre", "body", m.body));
    if (m.body_url) {
      a.append(link("whole body (" + m.body_chars + " characters)", m.body_url, "full"));
    }
    if (m.attachments.length) { a.append(attachments(m)); }
    var actions = el("div", "actions");
    actions.append(link("headers and source", m.url), deleteButton(m, refresh));
    a.append(actions);
    return a;
  }

  function renderList(msgs, q) {
    var items = msgs.map(listItem);
    if (!msgs.length) {
      items.push(el("p", "empty", q ? "No mail matches \u201c" + q + "\u201d." : "No mail yet."));
    }
    main.replaceChildren.apply(main, items);
    count.textContent = plural(msgs.length, "message") + (q ? " match" : "");
  }

  function refresh() {
    clearTimeout(timer);
    var q = search.value.trim(), mine = ++generation;
    getText("/messages.json" + (q ? "?q=" + encodeURIComponent(q) : "")).then(function (text) {
      if (mine !== generation) { return; }  // a newer search is under way
      if (text === null) { throw new Error("HTTP 404"); }
      if (q + "\n" + text !== last) {
        last = q + "\n" + text;
        renderList(JSON.parse(text), q);
      }
      document.body.dataset.live = "yes";
    }).catch(function () {
      if (mine !== generation) { return; }
      document.body.dataset.live = "no";
      last = null;
      count.textContent = "catcher not reachable, retrying";
    }).finally(function () {
      if (mine === generation) { timer = setTimeout(refresh, POLL_MS); }
    });
  }

  search.addEventListener("input", function () {
    var q = search.value.trim();
    history.replaceState(null, "", q ? "/?q=" + encodeURIComponent(q) : "/");
    refresh();
  });

  var armed = null;  // the timer that disarms "Delete all", while it waits for its 2nd click

  function disarm() {
    clearTimeout(armed);
    armed = null;
    clearButton.textContent = "Delete all";
    clearButton.classList.remove("armed");
  }

  clearButton.addEventListener("click", function () {
    if (armed === null) {
      armed = setTimeout(disarm, ARM_MS);
      clearButton.textContent = "Click again to delete all mail";
      clearButton.classList.add("armed");
      return;
    }
    disarm();
    post("/clear").then(refresh).catch(function (e) {
      count.textContent = "delete failed: " + e.message;
    });
  });

  // --- one message: fields, body, attachments, headers, raw source

  function fields(rows) {
    var table = el("table", "fields"), body = el("tbody");
    rows.forEach(function (row) {
      var tr = el("tr");
      tr.append(el("th", "", row[0]), el("td", "", row[1]));
      body.append(tr);
    });
    table.append(body);
    return table;
  }

  function renderMessage(m) {
    document.title = (m.subject || "(no subject)") + " \u2013 microsmtp catcher";
    var a = el("article", "msg full prio-" + m.priority);
    a.dataset.key = m.key;
    var h = el("h2", "subject", m.subject || "(no subject)");
    var mark = marker(m.priority);
    if (mark) { h.prepend(mark, " "); }
    var actions = el("div", "actions");
    actions.append(link("\u2190 all mail", "/"), link("raw source", m.raw_url),
                   deleteButton(m, function () { location.assign("/"); }));
    var rows = [["From", m.from], ["To", m.header_to.join(", ") || "(no To header)"]];
    if (m.cc.length) { rows.push(["Cc", m.cc.join(", ")]); }
    if (m.bcc.length) { rows.push(["Bcc", m.bcc.join(", ") + " (" + BCC_NOTE + ")"]); }
    rows.push(["Envelope to", m.to.join(", ")], ["Envelope from", m.envelope_from || "<>"],
              ["Received", m.time_text], ["Priority", m.priority],
              ["Size", m.raw_size + " bytes"]);
    a.append(actions, h, fields(rows));

    a.append(el("h3", "", "Body"), el("pre", "body", m.body));
    if (m.body_url) {
      a.append(link("whole body (" + m.body_chars + " characters)", m.body_url, "full"));
    }
    if (m.html_url) {
      var own = el("p", "note", "shown sandboxed: no scripts, no remote content; ");
      own.append(link("open it on its own", m.html_url));
      a.append(el("h3", "", "HTML part"), htmlPart(m), own);
    }
    if (m.attachments.length) { a.append(el("h3", "", "Attachments"), attachments(m)); }

    var headers = fields(m.headers);
    headers.className = "headers";
    a.append(el("h3", "", "Headers"), headers);
    if (m.headers_total > m.headers.length) {
      a.append(el("p", "note", "the first " + m.headers.length + " of " +
                  m.headers_total + " headers"));
    }
    a.append(el("h3", "", "Raw source"), el("pre", "raw", m.raw));
    if (!m.raw_complete) {
      var note = el("p", "note", "the first " + m.raw.length + " characters; ");
      note.append(link("the whole source (" + m.raw_size + " bytes)", m.raw_url));
      a.append(note);
    }
    main.replaceChildren(a);
  }

  function showMessage(encodedKey) {
    tools.hidden = true;
    getText("/messages/" + encodedKey + ".json").then(function (text) {
      document.body.dataset.live = "yes";
      if (text === null) {
        var p = el("p", "empty", "No such mail (deleted, or beyond the catcher's caps). ");
        p.append(link("All mail", "/"));
        main.replaceChildren(p);
        return;
      }
      renderMessage(JSON.parse(text));
    }).catch(function (e) {
      document.body.dataset.live = "no";
      main.replaceChildren(el("p", "empty", "catcher not reachable: " + e.message));
    });
  }

  getText("/status.json").then(function (s) {
    s = JSON.parse(s);
    info.textContent = "SMTP " + s.smtp + " \u00b7 Maildir " + s.maildir +
      (s.auth_required ? " \u00b7 AUTH required" : "") + (s.starttls ? " \u00b7 STARTTLS" : "");
  }).catch(function () {});

  var prefix = "/message/";
  if (location.pathname.indexOf(prefix) === 0) {
    showMessage(location.pathname.slice(prefix.length));
  } else {
    search.value = new URLSearchParams(location.search).get("q") || "";
    refresh();
  }
})();
