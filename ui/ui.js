// meridian /ui: refresh the health part of the page from the node every few
// seconds (keeping the last good one while the node does not answer) and
// draw each service's client-skew report from /api/v1/skew as SVG bars.
// Plain DOM: every name and message from the node is set as text, never as
// markup. No libraries and no request leaves the page's origin.
(function () {
  "use strict";
  var SVGNS = "http://www.w3.org/2000/svg";
  var page = document.getElementById("page");
  var live = document.getElementById("live");
  var every = parseInt(page.getAttribute("data-refresh-ms"), 10) || 3000;
  var skewShown = {}; // service name -> the element last drawn for it
  var refreshes = 0;

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }

  function svgEl(tag, attrs) {
    var e = document.createElementNS(SVGNS, tag);
    Object.keys(attrs || {}).forEach(function (k) { e.setAttribute(k, String(attrs[k])); });
    return e;
  }

  function isNum(x) { return typeof x === "number" && isFinite(x); }
  function share(x) { return isNum(x) ? Math.min(Math.max(x, 0), 1) : null; }
  function pct(x) { return isNum(x) ? (x * 100).toFixed(1) + " %" : "–"; }
  function clock(d) { return d.toTimeString().slice(0, 8); }

  function setLive(ok, why) {
    var now = clock(new Date());
    live.setAttribute("data-live", ok ? "ok" : "stale");
    live.setAttribute("data-refreshes", String(refreshes));
    live.textContent = ok
      ? "live · " + (refreshes ? "refreshed " : "loaded ") + now + " · refreshes every " + every / 1000 + " s"
      : "node not answering (" + why + ") at " + now + " · showing the last good view";
  }

  // refresh swaps in the server-rendered health part, puts back the skew
  // reports already drawn (so nothing flickers) and fetches them again.
  function refresh() {
    fetch(location.pathname + "?fragment=1", { cache: "no-store", credentials: "same-origin" })
      .then(function (r) {
        if (!r.ok) throw new Error("HTTP " + r.status);
        return r.text();
      })
      .then(function (html) {
        page.innerHTML = html;
        refreshes++;
        restoreSkew();
        setLive(true);
        loadSkew();
      })
      .catch(function (err) { setLive(false, err && err.message ? err.message : "error"); })
      .finally(function () { setTimeout(refresh, every); });
  }

  function skewBoxes() {
    return Array.prototype.slice.call(page.querySelectorAll(".skew[data-service]"));
  }

  function show(service, state, node) {
    skewShown[service] = { state: state, node: node };
    skewBoxes().forEach(function (box) {
      if (box.getAttribute("data-service") !== service) return;
      var body = box.querySelector(".skew-body");
      body.setAttribute("data-skew", state);
      body.replaceChildren(node);
    });
  }

  function restoreSkew() {
    skewBoxes().forEach(function (box) {
      var s = skewShown[box.getAttribute("data-service")];
      if (s) {
        var body = box.querySelector(".skew-body");
        body.setAttribute("data-skew", s.state);
        body.replaceChildren(s.node);
      }
    });
  }

  // loadSkew fetches every service's report. 404 (no skew report served,
  // or none for the service yet) says so; any other failure says what it
  // was, and the rest of the page carries on.
  function loadSkew() {
    skewBoxes().forEach(function (box) {
      var service = box.getAttribute("data-service");
      fetch("api/v1/skew?service=" + encodeURIComponent(service) + "&window=5m",
        { cache: "no-store", credentials: "same-origin" })
        .then(function (r) {
          if (r.status === 404) return null;
          if (!r.ok) throw new Error("HTTP " + r.status);
          return r.json();
        })
        .then(function (rep) {
          if (!rep || !Array.isArray(rep.endpoints) || rep.endpoints.length === 0) {
            show(service, "none", el("p", "none", "no skew data yet"));
            return;
          }
          show(service, "report", drawReport(rep));
        })
        .catch(function (err) {
          var had = skewShown[service];
          if (had && had.state === "report") return; // keep the last good report
          show(service, "error", el("p", "none", "skew report unavailable: " + (err && err.message ? err.message : "error")));
        });
    });
  }

  // drawReport renders one service's report: the headline (TVD, confidence),
  // one row of bars per endpoint and the alarms.
  function drawReport(rep) {
    var wrap = el("div", "report");
    var head = el("p", "headline");
    head.appendChild(el("span", "tvd", "skew index (TVD) " + (isNum(rep.tvd) ? rep.tvd.toFixed(3) : "–")));
    head.appendChild(document.createTextNode(" · window " + (rep.window || "?") + " · confidence "));
    var conf = rep.confidence || {};
    var grade = String(conf.grade || "unknown");
    head.appendChild(el("span", "grade grade-" + grade.toLowerCase().replace(/[^a-z]/g, ""), grade));
    if (Array.isArray(conf.reasons) && conf.reasons.length) {
      head.appendChild(el("span", "reasons", " (" + conf.reasons.join("; ") + ")"));
    }
    wrap.appendChild(head);

    var alarmed = {};
    (rep.alarms || []).forEach(function (a) { if (a && a.endpoint) alarmed[a.endpoint] = true; });

    var table = el("table", "shares");
    var hr = el("tr");
    ["endpoint", "region", "", "intended", "estimated [bracket]"].forEach(function (h) { hr.appendChild(el("th", null, h)); });
    var ans = el("th", null, "answered");
    if (rep.answered_label) ans.appendChild(el("span", "label", " (" + rep.answered_label + ")"));
    hr.appendChild(ans);
    hr.children[2].appendChild(legend());
    table.appendChild(el("thead")).appendChild(hr);
    var tbody = table.appendChild(el("tbody"));
    rep.endpoints.forEach(function (e) {
      var tr = el("tr", alarmed[e.name] ? "alarmed" : null);
      tr.setAttribute("data-endpoint", String(e.name));
      tr.appendChild(el("th", null, e.name));
      tr.appendChild(el("td", "region", e.region));
      tr.appendChild(el("td", "bars")).appendChild(bars(e));
      tr.appendChild(el("td", "num", pct(e.intended)));
      var est = pct(e.estimated);
      if (isNum(e.lo) && isNum(e.hi)) est += " [" + pct(e.lo) + " – " + pct(e.hi) + "]";
      tr.appendChild(el("td", "num", est));
      tr.appendChild(el("td", "num", pct(e.answered)));
      tbody.appendChild(tr);
    });
    wrap.appendChild(table);

    var alarms = rep.alarms || [];
    var ul = el("ul", "alarms");
    if (alarms.length === 0) {
      ul.appendChild(el("li", "ok", "no alarms"));
    }
    alarms.forEach(function (a) {
      var li = el("li", "alarm");
      li.appendChild(el("span", "kind", a.kind));
      li.appendChild(document.createTextNode(" " + (a.endpoint || "") + (a.detail ? " — " + a.detail : "")));
      ul.appendChild(li);
    });
    wrap.appendChild(ul);
    return wrap;
  }

  var W = 300, H = 30;

  // bars draws an endpoint's shares: intended (grey bar and dashed mark),
  // estimated (blue bar) and the bracket around it (whiskers).
  function bars(e) {
    var s = svgEl("svg", { width: W, height: H, viewBox: "0 0 " + W + " " + H, "class": "sharebars", role: "img" });
    var t = svgEl("title");
    t.textContent = "intended " + pct(e.intended) + ", estimated " + pct(e.estimated) +
      (isNum(e.lo) && isNum(e.hi) ? " [" + pct(e.lo) + " – " + pct(e.hi) + "]" : "");
    s.appendChild(t);
    s.appendChild(svgEl("rect", { x: 0, y: 2, width: W, height: H - 4, "class": "track" }));
    var it = share(e.intended), es = share(e.estimated), lo = share(e.lo), hi = share(e.hi);
    if (it !== null) {
      s.appendChild(svgEl("rect", { x: 0, y: 4, width: (it * W).toFixed(1), height: 7, "class": "intended" }));
    }
    if (es !== null) {
      s.appendChild(svgEl("rect", { x: 0, y: 14, width: (es * W).toFixed(1), height: 12, "class": "estimated" }));
    }
    if (lo !== null && hi !== null && hi >= lo) {
      var x1 = (lo * W).toFixed(1), x2 = (hi * W).toFixed(1);
      s.appendChild(svgEl("line", { x1: x1, x2: x2, y1: 20, y2: 20, "class": "bracket" }));
      s.appendChild(svgEl("line", { x1: x1, x2: x1, y1: 15, y2: 25, "class": "bracket" }));
      s.appendChild(svgEl("line", { x1: x2, x2: x2, y1: 15, y2: 25, "class": "bracket" }));
    }
    if (it !== null) {
      var x = (it * W).toFixed(1);
      s.appendChild(svgEl("line", { x1: x, x2: x, y1: 1, y2: H - 1, "class": "mark" }));
    }
    return s;
  }

  function legend() {
    var s = svgEl("svg", { width: 250, height: 14, "class": "legend", "aria-hidden": "true" });
    s.appendChild(svgEl("rect", { x: 0, y: 4, width: 14, height: 7, "class": "intended" }));
    var a = svgEl("text", { x: 18, y: 12 }); a.textContent = "intended";
    s.appendChild(a);
    s.appendChild(svgEl("rect", { x: 82, y: 1, width: 14, height: 12, "class": "estimated" }));
    var b = svgEl("text", { x: 100, y: 12 }); b.textContent = "estimated, with bracket";
    s.appendChild(b);
    return s;
  }

  loadSkew();
  setLive(true);
  setTimeout(refresh, every);
})();
