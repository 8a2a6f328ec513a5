/* The Content-Security-Policy refuses inline style attributes (no 'unsafe-inline'), so markup
 * carries its few computed styles (a mechanism's colour, a legend swatch) as data-style, and
 * this applies them through the CSSOM, which the policy allows. Markup inserted later (a map
 * popup, a marker icon) is passed to JGStyles(element) once it is in place. */
(function () {
  "use strict";
  function apply(root) {
    var scope = root || document;
    var list = scope.querySelectorAll ? scope.querySelectorAll("[data-style]") : [];
    if (scope.hasAttribute && scope.hasAttribute("data-style")) list = [scope].concat(Array.prototype.slice.call(list));
    Array.prototype.forEach.call(list, function (el) {
      el.style.cssText = el.getAttribute("data-style");
      el.removeAttribute("data-style");
    });
  }
  window.JGStyles = apply;
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", function () { apply(); });
  else apply();
})();
