/* The message catalogue in the browser: the same keys and text as the server (api/i18n),
   fetched once from the URL the page names in <html data-i18n>, cacheable by its hash. */
(function () {
  "use strict";
  var root = document.documentElement;
  var url = root.getAttribute("data-i18n");
  var messages = {};

  var ready = !url
    ? Promise.resolve(messages)
    : fetch(url, { credentials: "same-origin" })
        .then(function (r) { return r.ok ? r.json() : { messages: {} }; })
        .then(function (doc) { messages = doc.messages || {}; return messages; })
        .catch(function () { return messages; });

  /** The text of `key` with its {fields} filled from `params`; the key itself if unknown. */
  function t(key, params) {
    var text = Object.prototype.hasOwnProperty.call(messages, key) ? messages[key] : key;
    if (!params) return text;
    return text.replace(/\{(\w+)\}/g, function (whole, name) {
      return Object.prototype.hasOwnProperty.call(params, name) ? String(params[name]) : whole;
    });
  }

  /** A length of time, coarse: 2天3小时, 5小时10分, 12分钟 (as api.i18n.span). */
  function span(ms) {
    var minutes = Math.floor(Math.abs(ms) / 60000);
    var d = Math.floor(minutes / 1440), h = Math.floor((minutes % 1440) / 60), m = minutes % 60;
    if (d) return t("time.days_hours", { d: d, h: h });
    if (h) return t("time.hours_minutes", { h: h, m: m });
    return t("time.minutes", { m: m });
  }

  /** 剩余 … or 超期 … until `dueIso` from `now` (ms), as api.i18n.time_left. */
  function timeLeft(dueIso, now) {
    if (!dueIso) return t("time.no_limit");
    var delta = Date.parse(dueIso) - now;
    return delta < 0 ? t("time.overdue", { over: span(delta) }) : t("time.left", { left: span(delta) });
  }

  window.JointGridI18n = { ready: ready, t: t, span: span, timeLeft: timeLeft };
})();
