// reverify console: refresh the page's content in place every data-refresh seconds, unless someone is typing.
// No dependencies; the pages work without it (they are plain HTML and SVG drawn by the server).
(function () {
  "use strict";
  var seconds = parseInt(document.body.getAttribute("data-refresh") || "0", 10);
  var stamp = document.getElementById("updated");
  function mark() { if (stamp) { stamp.textContent = "updated " + new Date().toLocaleTimeString(); } }
  function busy() {
    var el = document.activeElement;
    return el && (el.tagName === "INPUT" || el.tagName === "TEXTAREA" || el.tagName === "SELECT");
  }
  function refresh() {
    if (document.hidden || busy()) { return; }
    fetch(window.location.href, { credentials: "same-origin", headers: { "X-Console-Refresh": "1" } })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (text) {
        if (!text || busy()) { return; }
        var doc = new DOMParser().parseFromString(text, "text/html");
        var fresh = doc.querySelector("main");
        var notice = document.querySelector("main > .notice");
        if (fresh) {
          var old = fresh.querySelector(".notice");
          if (old) { old.remove(); }
          if (notice) { fresh.insertBefore(notice, fresh.firstChild); }
          document.querySelector("main").replaceWith(fresh);
          mark();
        }
      })
      .catch(function () { if (stamp) { stamp.textContent = "not reachable"; } });
  }
  document.addEventListener("submit", function (event) {
    var button = event.target.querySelector("button[data-confirm]");
    if (button && !window.confirm(button.getAttribute("data-confirm"))) { event.preventDefault(); }
  });
  mark();
  if (seconds > 0) { window.setInterval(refresh, seconds * 1000); }
})();
