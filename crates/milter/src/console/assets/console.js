// chaff console: the little the pages do in the browser. Everything works
// without it; it adds "select all", a confirmation before deleting, and
// reading an uploaded message file into the "try a message" form.
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  document.querySelectorAll("input[data-select-all]").forEach(function (all) {
    var form = all.form;
    all.addEventListener("change", function () {
      form.querySelectorAll("input[name=id]").forEach(function (box) {
        box.checked = all.checked;
      });
    });
  });
  document.querySelectorAll("button[data-confirm]").forEach(function (b) {
    b.addEventListener("click", function (ev) {
      if (!window.confirm(b.getAttribute("data-confirm"))) {
        ev.preventDefault();
      }
    });
  });
  var upload = document.getElementById("upload");
  var text = document.getElementById("message");
  if (upload && text) {
    upload.addEventListener("change", function () {
      var f = upload.files && upload.files[0];
      if (!f) {
        return;
      }
      var max = parseInt(text.getAttribute("data-max") || "0", 10);
      var note = document.getElementById("upload-note");
      if (max > 0 && f.size > max) {
        if (note) {
          note.textContent = note.getAttribute("data-too-large");
        }
        upload.value = "";
        return;
      }
      var r = new FileReader();
      r.onload = function () {
        text.value = String(r.result);
        if (note) {
          note.textContent = "";
        }
      };
      r.readAsText(f);
    });
  }
});
