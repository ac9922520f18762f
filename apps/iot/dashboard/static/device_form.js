// Device forms: show the option fieldset of the selected kind only (without JS every fieldset shows;
// the server reads only the selected kind's fields either way).
(function () {
  function sync(form) {
    var select = form.querySelector("select[name=kind]");
    if (!select) return;
    form.querySelectorAll("fieldset[data-kind]").forEach(function (set) {
      set.hidden = set.getAttribute("data-kind") !== select.value;
    });
    form.querySelectorAll("[data-not-kind]").forEach(function (el) {
      el.hidden = el.getAttribute("data-not-kind").split(" ").indexOf(select.value) >= 0;
    });
  }
  document.addEventListener("change", function (event) {
    if (event.target.matches("select[name=kind]")) sync(event.target.form);
  });
  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("form").forEach(sync);
  });
})();
