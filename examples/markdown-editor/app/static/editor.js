// Inlined into every page (Content-Security-Policy allows it by its hash).
(function () {
  "use strict";

  var dirty = false; // the editor has changes that are not saved

  // Forms with data-confirm ask before submitting (used for delete).
  document.querySelectorAll("form[data-confirm]").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      if (window.confirm(form.getAttribute("data-confirm"))) {
        dirty = false;
      } else {
        event.preventDefault();
      }
    });
  });

  var source = document.getElementById("content");
  var preview = document.getElementById("preview");
  if (!source || !preview) {
    return;
  }
  var form = source.form;
  var status = document.getElementById("preview-status");
  var timer = 0;
  var sent = 0; // number of the latest request sent
  var shown = 0; // number of the request whose result is shown

  function setStatus(text, state) {
    status.textContent = text;
    status.setAttribute("data-state", state);
  }

  // POSTs the markdown to /api/render. The server renders it with raw HTML
  // omitted, so the result can be inserted as is.
  function render() {
    var id = ++sent;
    setStatus("Rendering…", "busy");
    fetch("/api/render", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ content: source.value })
    })
      .then(function (res) {
        return res.json().then(function (body) {
          if (!res.ok) {
            throw new Error(body.error || res.statusText);
          }
          return body;
        });
      })
      .then(function (body) {
        if (id < shown) {
          return; // a newer preview is already shown
        }
        shown = id;
        preview.innerHTML = body.html;
        if (id === sent) {
          setStatus(dirty ? "Unsaved changes" : "", dirty ? "dirty" : "");
        }
      })
      .catch(function (err) {
        if (id === sent) {
          setStatus("Preview failed: " + err.message, "error");
        }
      });
  }

  function changed() {
    dirty = true;
    window.clearTimeout(timer);
    timer = window.setTimeout(render, 200);
  }

  source.addEventListener("input", changed);
  form.elements.title.addEventListener("input", function () {
    dirty = true;
    setStatus("Unsaved changes", "dirty");
  });
  form.addEventListener("submit", function () {
    dirty = false;
  });
  window.addEventListener("beforeunload", function (event) {
    if (dirty) {
      event.preventDefault();
      event.returnValue = "";
    }
  });
  // Ctrl+S / Cmd+S saves.
  document.addEventListener("keydown", function (event) {
    if ((event.ctrlKey || event.metaKey) && event.key === "s") {
      event.preventDefault();
      form.requestSubmit();
    }
  });
})();
