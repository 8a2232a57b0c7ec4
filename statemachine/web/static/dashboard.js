// phasekit dashboard: follow /api/events and redraw the page's <main> from the server.
// The server renders (and escapes) every value; this script only swaps the fragment in.
(function () {
  "use strict";
  var body = document.body;
  var base = body.getAttribute("data-base") || "";
  var jobId = body.getAttribute("data-job-id");
  var live = document.getElementById("live");
  var main = document.getElementById("main");
  var pending = null;
  var fetching = false;
  var started = 0;  // when the last redraw began (Date.now())
  var again = false;

  function say(text) {
    if (live) { live.textContent = text; }
  }

  function fragmentUrl() {
    var url = new URL(window.location.href);
    url.searchParams.set("fragment", "1");
    return url.toString();
  }

  function redraw() {
    pending = null;
    if (fetching) { again = true; return; }
    fetching = true;
    started = Date.now();
    fetch(fragmentUrl(), { credentials: "same-origin", cache: "no-store" })
      .then(function (response) {
        if (!response.ok) { throw new Error("HTTP " + response.status); }
        return response.text();
      })
      .then(function (html) {
        var open = Array.prototype.map.call(
          main.querySelectorAll("details"), function (d) { return d.open; });
        main.innerHTML = html;
        Array.prototype.forEach.call(main.querySelectorAll("details"), function (d, i) {
          if (i < open.length) { d.open = open[i]; }
        });
        // Before the browser paints: the diagram's script puts its drawing back at once.
        document.dispatchEvent(new CustomEvent("phasekit:updated"));
        body.setAttribute("data-updated", String(Date.now()));
      })
      .catch(function (err) { say("update failed: " + err.message); })
      .then(function () {
        fetching = false;
        if (again) { again = false; schedule(); }
      });
  }

  // An event redraws at once; the events of a burst after it, at most once per 100 ms.
  function schedule() {
    if (pending === null) {
      pending = window.setTimeout(redraw, Math.max(0, started + 100 - Date.now()));
    }
  }

  function onEvent(message) {
    if (jobId !== null) {
      try {
        if (JSON.parse(message.data).job_id !== jobId) { return; }
      } catch (e) { return; }
    }
    schedule();
  }

  if (!window.EventSource) { say("no live updates in this browser"); return; }
  var source = new EventSource(base + "/api/events", { withCredentials: true });
  ["job_created", "phase_changed", "progress_updated", "job_status_changed", "job_deleted"]
    .forEach(function (type) { source.addEventListener(type, onEvent); });
  source.onopen = function () { say("live"); body.setAttribute("data-live", "1"); };
  source.onerror = function () { say("reconnecting…"); body.setAttribute("data-live", "0"); };
})();
