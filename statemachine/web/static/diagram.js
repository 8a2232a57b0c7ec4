// phasekit dashboard: draw a job's phase diagram from the Mermaid source the server wrote into
// the page (pre#mermaid), with the vendored Mermaid, and keep it drawn as the page updates.
// Progressive: without JavaScript, or when Mermaid is missing or fails, the source stays open.
//
// The server sets no Content-Security-Policy. A host that adds one needs no 'unsafe-eval'
// (Mermaid compiles nothing at run time), but Mermaid's SVG carries a <style> element and
// style attributes (the highlight's fill), so it needs style-src 'unsafe-inline', which the
// pages' own bars (style='width:…') need already; script-src 'self' is enough.
(function () {
  "use strict";
  var mermaid = window.mermaid;
  if (!mermaid || !document.getElementById("mermaid")) { return; }
  mermaid.initialize({
    startOnLoad: false,
    // The SVG is sanitized and labels are text: no HTML, no click handlers from the source.
    securityLevel: "strict",
    // A failed drawing leaves nothing in the page (the source is still there).
    suppressErrorRendering: true,
    fontFamily: "system-ui, sans-serif",
    // Wide enough for each line of the job's note to stay one line.
    state: { wrappingWidth: 260 }
  });

  // A drawing costs about 100 ms of the page's thread. A change of what it highlights (the
  // phases' statuses) is drawn at once; a change of the rest alone (the progress in the job's
  // note) at most this often, however many progress events arrive.
  var DETAIL_DELAY = 2000;
  var drawn = null;    // {source, statuses, node}: the last drawing, kept across page updates
  var failed = null;   // the source Mermaid could not draw, not tried again
  var drawing = false;
  var again = false;
  var later = null;
  var count = 0;

  function current() {
    var pre = document.getElementById("mermaid");
    return pre && {
      source: pre.textContent,
      statuses: pre.getAttribute("data-statuses") || ""
    };
  }

  // Put ``node`` (a drawing) in the diagram's section, in place of an older one.
  function show(node) {
    var section = document.getElementById("diagram");
    if (!section) { return; }
    var old = document.getElementById("diagram-drawing");
    if (old === node) { return; }
    if (old) { old.parentNode.removeChild(old); }
    var heading = section.querySelector("h2");
    section.insertBefore(node, heading ? heading.nextSibling : section.firstChild);
    section.classList.add("drawn");
  }

  // The status of each state id of ``source``: to_mermaid declares every state first as
  // 'state "<status>" as <id>' ('state "<status><br/>…" as <id>' with deadlines), the id the
  // status's name unless Mermaid would misread it (a status named "note" is "_note").
  var DECLARATION = /^\s*state "([A-Za-z][A-Za-z0-9_]*)(?:<br\/>[^"]*)?" as (\w+)\s*$/;
  function statusesOf(source) {
    var statuses = {};
    source.split("\n").forEach(function (line) {
      var match = DECLARATION.exec(line);
      if (match) { statuses[match[2]] = match[1]; }
    });
    return statuses;
  }

  // Name each state of the drawing by its status: Mermaid's ids are "<id>-state-<state>-<n>",
  // <state> the id the source gave the state.
  function label(node, id, source) {
    var statuses = statusesOf(source);
    var pattern = new RegExp("^" + id + "-state-(\\w+)-\\d+$");
    Array.prototype.forEach.call(
      node.querySelectorAll("g.node.statediagram-state"),
      function (state) {
        var match = pattern.exec(state.id);
        if (match && Object.prototype.hasOwnProperty.call(statuses, match[1])) {
          state.setAttribute("data-status", statuses[match[1]]);
        }
      });
  }

  function draw() {
    var wanted = current();
    if (!wanted || (drawn && drawn.source === wanted.source) || wanted.source === failed) {
      return;
    }
    if (drawing) { again = true; return; }
    drawing = true;
    count += 1;
    var id = "phasekit-diagram-" + count;
    mermaid.render(id, wanted.source)
      .then(function (result) {
        var node = document.createElement("div");
        node.id = "diagram-drawing";
        node.className = "drawing";
        node.setAttribute("data-statuses", wanted.statuses);
        node.innerHTML = result.svg;
        label(node, id, wanted.source);
        var first = drawn === null;
        drawn = { source: wanted.source, statuses: wanted.statuses, node: node };
        show(node);
        // The drawing replaces the source; the page's updates keep the <details> as the
        // reader left it from now on.
        var source = document.getElementById("mermaid-source");
        if (first && source) { source.open = false; }
      })
      .catch(function (err) {
        failed = wanted.source;
        if (window.console) { window.console.warn("phasekit: diagram not drawn:", err); }
      })
      .then(function () {
        drawing = false;
        if (again) { again = false; update(); }
      });
  }

  // The page's <main> was replaced: show the last drawing again at once (no flash of the
  // source), and draw anew if the source changed.
  function update() {
    var wanted = current();
    if (!wanted) { return; }
    if (drawn) { show(drawn.node); }
    if (drawn && drawn.source !== wanted.source && drawn.statuses === wanted.statuses) {
      if (later === null) {
        later = window.setTimeout(function () { later = null; draw(); }, DETAIL_DELAY);
      }
      return;
    }
    draw();
  }

  document.addEventListener("phasekit:updated", update);
  update();
})();
