// Light or dark: the system's choice (prefers-color-scheme) until the toggle picks one, then that one,
// remembered in localStorage. Loaded in <head> without defer so the theme is set before the first paint.
(function () {
  "use strict";
  var KEY = "iot-theme";
  var root = document.documentElement;
  var dark = window.matchMedia ? window.matchMedia("(prefers-color-scheme: dark)") : null;

  function stored() {
    try {
      var value = window.localStorage.getItem(KEY);
      return value === "dark" || value === "light" ? value : null;
    } catch (e) {
      return null; // storage blocked: follow the system
    }
  }

  function current() {
    return stored() || (dark && dark.matches ? "dark" : "light");
  }

  var chosen = stored();
  if (chosen) {
    root.setAttribute("data-theme", chosen);
  }

  function label(button) {
    var isDark = current() === "dark";
    button.textContent = isDark ? "Light mode" : "Dark mode";
    button.setAttribute("aria-pressed", isDark ? "true" : "false");
  }

  document.addEventListener("DOMContentLoaded", function () {
    var button = document.getElementById("theme-toggle");
    if (!button) {
      return;
    }
    button.hidden = false; // without script there is no toggle, and the system's choice applies
    label(button);
    button.addEventListener("click", function () {
      var next = current() === "dark" ? "light" : "dark";
      root.setAttribute("data-theme", next);
      try {
        window.localStorage.setItem(KEY, next);
      } catch (e) {
        // not remembered, still applied to this page
      }
      label(button);
    });
    if (dark && dark.addEventListener) {
      dark.addEventListener("change", function () { label(button); });
    }
  });
})();
