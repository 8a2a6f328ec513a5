/* JointGrid command-centre map: server-fed layers, live incidents, heat map, filters in the URL.
 *
 * The page is built by folium on the server; this file gives its layers their behaviour.
 * Everything is fetched from this server: layer GeoJSON for the box in view, incidents (cells
 * or single cases, by zoom) every few seconds, the heat map, and each incident's popup.
 */
(function () {
  "use strict";

  var JG = (window.JointGrid = window.JointGrid || {});
  JG.status = { layers: {}, incidents: null, heat: null, errors: [] };
  JG.started = false;
  JG.readyAt = null;

  function esc(value) {
    return String(value == null ? "" : value).replace(/[&<>"']/g, function (c) {
      return { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c];
    });
  }

  // The catalogue's text for this page (api/i18n), handed over in the page's config.
  JG.t = function (key, params) {
    var messages = (JG.cfg && JG.cfg.messages) || {};
    var text = Object.prototype.hasOwnProperty.call(messages, key) ? messages[key] : key;
    if (!params) return text;
    return text.replace(/\{(\w+)\}/g, function (whole, name) {
      return Object.prototype.hasOwnProperty.call(params, name) ? String(params[name]) : whole;
    });
  };

  function query(obj) {
    var parts = [];
    Object.keys(obj).forEach(function (k) {
      var v = obj[k];
      if (v === undefined || v === null || v === "") return;
      parts.push(encodeURIComponent(k) + "=" + encodeURIComponent(v).replace(/%2C/g, ","));
    });
    return parts.join("&");
  }

  function bboxOf(bounds) {
    var f = function (x) { return x.toFixed(5); };
    return [
      f(Math.max(-180, bounds.getWest())), f(Math.max(-90, bounds.getSouth())),
      f(Math.min(180, bounds.getEast())), f(Math.min(90, bounds.getNorth()))
    ].join(",");
  }

  function fetchJson(url, signal) {
    return fetch(url, { cache: "no-store", signal: signal, credentials: "same-origin" }).then(function (r) {
      if (!r.ok) {
        return r.json().catch(function () { return {}; }).then(function (body) {
          throw new Error((body && body.message) || ("HTTP " + r.status));
        });
      }
      return r.json();
    });
  }

  function noteError(where, err) {
    if (err && err.name === "AbortError") return;
    JG.status.errors.push(where + ": " + (err && err.message ? err.message : err));
    showStatus();
  }

  /* ---------------------------------------------------------------- the URL */

  // Filters live in the query string, the view in the hash (#zoom/lat/lon).
  JG.filterParams = function () {
    var out = {};
    var search = new URLSearchParams(window.location.search);
    (JG.cfg ? JG.cfg.filter_keys : []).forEach(function (k) {
      var v = search.get(k);
      if (v) out[k] = v;
    });
    return out;
  };

  function setSearchParam(name, value) {
    var search = new URLSearchParams(window.location.search);
    if (value === null || value === undefined || value === "") search.delete(name);
    else search.set(name, value);
    var text = search.toString().replace(/%2C/g, ",");
    history.replaceState(null, "", window.location.pathname + (text ? "?" + text : "") + window.location.hash);
    syncLinks();
  }

  function syncLinks() {
    var link = document.getElementById("jg-dashboard-link");
    if (link && JG.cfg) {
      var f = JG.filterParams();
      delete f.status; // the dashboard splits by status itself
      var q = query(f);
      link.href = JG.cfg.urls.dashboard + (q ? "?" + q : "");
    }
  }

  function viewFromHash() {
    var m = /^#(\d+(?:\.\d+)?)\/(-?\d+(?:\.\d+)?)\/(-?\d+(?:\.\d+)?)$/.exec(window.location.hash);
    if (!m) return null;
    return { zoom: parseFloat(m[1]), lat: parseFloat(m[2]), lon: parseFloat(m[3]) };
  }

  function writeHash() {
    var c = JG.map.getCenter();
    var hash = "#" + JG.map.getZoom() + "/" + c.lat.toFixed(5) + "/" + c.lng.toFixed(5);
    history.replaceState(null, "", window.location.pathname + window.location.search + hash);
  }

  /* ---------------------------------------------------------------- layers from the registry */

  function propsTable(title, props) {
    var rows = Object.keys(props || {}).map(function (k) {
      var v = props[k];
      if (v !== null && typeof v === "object") v = JSON.stringify(v);
      return "<tr><th>" + esc(k) + "</th><td>" + esc(v) + "</td></tr>";
    });
    return '<div class="jg-popup"><h3>' + esc(title) + "</h3><table>" + rows.join("") + "</table></div>";
  }

  JG.ServerLayer = L.GeoJSON.extend({
    initialize: function (cfg) {
      this.cfg = cfg;
      var style = cfg.style || {};
      var sideColours = cfg.side_colours || null;
      var colourBy = cfg.colour_by || null;
      L.GeoJSON.prototype.initialize.call(this, null, {
        style: function (feature) {
          // a value scale (coverage: days since the last patrol; none, or past the gap days, is a gap)
          if (colourBy && feature) {
            var v = feature.properties[colourBy.property];
            if (v === null || v === undefined || v >= colourBy.gap_days) {
              return L.extend({}, style, { color: colourBy.gap, fillColor: colourBy.gap, fillOpacity: 0.5, dashArray: "4 3" });
            }
            var stop = colourBy.stops.filter(function (s) { return v < s[0]; })[0];
            var col = stop ? stop[1] : colourBy.stops[colourBy.stops.length - 1][1];
            return L.extend({}, style, { color: col, fillColor: col });
          }
          // districts: coloured by their side
          var c = sideColours && feature && sideColours[feature.properties.side];
          return c ? L.extend({}, style, { color: c, fillColor: c, fillOpacity: 0.07 }) : style;
        },
        pointToLayer: function (feature, latlng) {
          return L.circleMarker(latlng, L.extend({ radius: 6, weight: 2, fillOpacity: 0.9 }, style));
        },
        onEachFeature: function (feature, layer) {
          var p = feature.properties || {};
          var label = cfg.label && p[cfg.label];
          var sideLabel = cfg.side_labels && cfg.side_labels[p.side];
          if (sideLabel) {
            // each district carries its side's name, e.g. 安居区（四川）
            layer.bindTooltip(esc(sideLabel), { permanent: true, direction: "center", className: "jg-district-label jg-side-" + esc(p.side) });
          } else if (label) layer.bindTooltip(esc(label), { sticky: true });
          if (cfg.popup_url) {
            // a popup the server renders (a team's members on duty, last fix, distance, cases)
            layer.bindPopup('<div class="jg-popup jg-loading">' + esc(label || "") + "</div>", { maxWidth: 360 });
            layer.on("popupopen", function (e) {
              fetch(cfg.popup_url + encodeURIComponent(feature.id), { credentials: "same-origin" })
                .then(function (r) { return r.text().then(function (t) { return { ok: r.ok, text: t }; }); })
                .then(function (res) {
                  e.popup.setContent(res.ok ? res.text : propsTable(cfg.title + (label ? ": " + label : ""), p));
                })
                .catch(function () { e.popup.setContent(propsTable(cfg.title + (label ? ": " + label : ""), p)); });
            });
            return;
          }
          layer.bindPopup(function () { return propsTable(cfg.title + (label ? ": " + label : ""), p); }, { maxWidth: 360 });
        }
      });
      this._loaded = null;
      this._pending = null;
      this._abort = null;
      JG.status.layers[cfg.id] = { state: "off", features: 0 };
    },

    onAdd: function (map) {
      L.GeoJSON.prototype.onAdd.call(this, map);
      map.on("moveend", this.reload, this);
      JG.status.layers[this.cfg.id].state = "pending";
      this.reload();
      if (this.cfg.refresh_s > 0) {
        // a live layer (team positions) reloads by itself, unless one of its popups is open
        var self = this;
        this._refresh = setInterval(function () {
          var open = false;
          self.eachLayer(function (l) { if (l.isPopupOpen && l.isPopupOpen()) open = true; });
          if (open) return;
          self._loaded = null;
          self.reload();
        }, this.cfg.refresh_s * 1000);
      }
    },

    onRemove: function (map) {
      if (this._refresh) { clearInterval(this._refresh); this._refresh = null; }
      map.off("moveend", this.reload, this);
      if (this._abort) this._abort.abort();
      this.clearLayers();
      this._loaded = null;
      JG.status.layers[this.cfg.id] = { state: "off", features: 0 };
      L.GeoJSON.prototype.onRemove.call(this, map);
    },

    reload: function () {
      var map = this._map, cfg = this.cfg, st = JG.status.layers[cfg.id];
      if (!map || !JG.started) return; // JointGrid.init loads every layer once the view is set
      var z = Math.round(map.getZoom());
      if (z < cfg.min_zoom) {
        if (this._abort) this._abort.abort();
        this.clearLayers();
        this._loaded = null;
        st.state = "zoom in to " + cfg.min_zoom;
        st.features = 0;
        checkReady();
        return;
      }
      var view = map.getBounds(), bounds = null, params = { z: z };
      if (cfg.by_bbox) {
        if (this._loaded && this._loaded.z === z && this._loaded.bounds.contains(view)) return;
        bounds = view.pad(0.5);
        params.bbox = bboxOf(bounds);
      } else if (this._loaded && this._loaded.z === z) {
        return;
      }
      if (this._abort) this._abort.abort();
      var abort = (this._abort = new AbortController());
      var self = this;
      st.state = "loading";
      fetchJson(cfg.url + "?" + query(params), abort.signal).then(function (fc) {
        self.clearLayers();
        self.addData(fc);
        if (!cfg.point && self.bringToBack) self.bringToBack();
        self._loaded = { z: z, bounds: bounds };
        st.state = "loaded";
        st.features = fc.features.length;
        st.loads = (st.loads || 0) + 1;
        checkReady();
      }).catch(function (err) {
        if (err && err.name === "AbortError") return;
        st.state = "error";
        noteError(cfg.id, err);
        checkReady();
      });
    }
  });

  JG.serverLayer = function (cfg) { return new JG.ServerLayer(cfg); };

  /* ---------------------------------------------------------------- incidents */

  function colourOf(mechanism) {
    var cfg = JG.cfg;
    return (cfg && cfg.mechanism_colours[mechanism || "none"]) || (cfg ? cfg.fallback_colour : "#333");
  }

  // The Realtime layer's source: the box in view, the zoom and the filters from the URL.
  JG.incidentSource = function (success, error) {
    var map = JG.map;
    if (!map) return;
    var box = map.getBounds().pad(0.15);
    var params = L.extend({ bbox: bboxOf(box), z: map.getZoom() }, JG.filterParams());
    JG._incidentBox = { bounds: box, z: map.getZoom() };
    if (JG._incidentAbort) JG._incidentAbort.abort();
    var abort = (JG._incidentAbort = new AbortController());
    var started = performance.now();
    fetchJson(JG.cfg.urls.incidents + "?" + query(params), abort.signal).then(function (fc) {
      var count = 0;
      fc.features.forEach(function (f) { count += f.properties.kind === "cell" ? f.properties.count : 1; });
      JG.status.incidents = {
        mode: fc.meta.mode, features: fc.features.length, cases: count,
        at: new Date(), ms: Math.round(performance.now() - started)
      };
      success(fc);
    }).catch(function (err) {
      if (err && err.name === "AbortError") return;
      noteError("incidents", err);
      error(err, err && err.message);
    });
  };

  JG.featureKey = function (f) { return f.properties.key; };

  // Single cases go into a marker-cluster group (overlapping markers at high zoom); counted
  // cells from the server are drawn as they come.
  JG.IncidentContainer = L.Layer.extend({
    initialize: function () {
      this.cells = L.layerGroup();
      this.points = L.markerClusterGroup({
        maxClusterRadius: 36,
        showCoverageOnHover: false,
        spiderfyOnMaxZoom: true,
        chunkedLoading: true,
        iconCreateFunction: function (cluster) {
          var n = cluster.getChildCount(), overdue = 0;
          cluster.getAllChildMarkers().forEach(function (m) {
            if (m.feature && m.feature.properties.overdue) overdue += 1;
          });
          return L.divIcon({
            html: "<span>" + n + "</span>",
            className: "jg-mcluster" + (overdue ? " jg-overdue" : ""),
            iconSize: [32, 32]
          });
        }
      });
      this._add = [];
      this._remove = [];
      var self = this;
      // A spiderfied cluster folds up on any change to the group: changes wait until it closes.
      this.points.on("spiderfied", function () { JG.hold.spider = true; });
      this.points.on("unspiderfied", function () { JG.hold.spider = false; self._schedule(); });
    },
    onAdd: function (map) { map.addLayer(this.cells); map.addLayer(this.points); },
    onRemove: function (map) { map.removeLayer(this.cells); map.removeLayer(this.points); },
    addLayer: function (layer) {
      if (layer.feature && layer.feature.properties.kind === "cell") this.cells.addLayer(layer);
      else this._add.push(layer);
      this._schedule();
      return this;
    },
    removeLayer: function (layer) {
      if (!layer) return this;
      if (this.cells.hasLayer(layer)) { this.cells.removeLayer(layer); return this; }
      var i = this._add.indexOf(layer);
      if (i >= 0) this._add.splice(i, 1);
      else this._remove.push(layer);
      this._schedule();
      return this;
    },
    hasLayer: function (layer) { return this.cells.hasLayer(layer) || this.points.hasLayer(layer); },
    // Realtime adds and removes markers one by one; the cluster group is fast only in bulk.
    _schedule: function () {
      if (this._timer) return;
      var self = this;
      this._timer = setTimeout(function () { self.flush(); }, 0);
    },
    flush: function () {
      clearTimeout(this._timer);
      this._timer = null;
      if (JG.holding()) return; // applied once the popup closes or the cluster folds
      if (this._remove.length) { this.points.removeLayers(this._remove); this._remove = []; }
      if (this._add.length) { this.points.addLayers(this._add); this._add = []; }
    }
  });

  // While a case's popup is open, or a cluster is spread out, the refresh leaves the markers
  // where they are: it neither moves, removes nor re-clusters them (that would close the popup).
  JG.hold = { popup: null, spider: false };
  // A cluster counts as spread from the moment it starts to unfold (the group's _spiderfied is
  // set then), not only once its "spiderfied" event fires after the animation: a refresh that
  // lands during the animation would fold it again.
  JG.holding = function () {
    var spread = JG.container && JG.container.points && JG.container.points._spiderfied;
    return !!(JG.hold.popup || JG.hold.spider || spread);
  };

  // The Realtime layer's update of a case already on the map: the same marker, moved only if
  // the case moved (never while spread out of its cluster or holding an open popup).
  JG.updateIncident = function (feature, oldLayer) {
    if (!oldLayer) return undefined;
    var p = feature.properties;
    if (p.kind === "cell" || oldLayer._jgDrawn !== drawnAs(p)) {
      if (oldLayer === JG.hold.popup || oldLayer._preSpiderfyLatlng) return oldLayer;
      return undefined; // drawn anew: its icon shows the new status
    }
    if (oldLayer === JG.hold.popup || oldLayer._preSpiderfyLatlng) return oldLayer;
    var ll = L.GeoJSON.coordsToLatLng(feature.geometry.coordinates);
    if (!oldLayer.getLatLng().equals(ll)) oldLayer.setLatLng(ll);
    return oldLayer;
  };

  JG.incidentContainer = function () {
    JG.container = new JG.IncidentContainer();
    return JG.container;
  };

  // A div icon whose markup carries data-style (see styles.js): applied as each icon is made.
  var StyledIcon = L.DivIcon.extend({
    createIcon: function (old) {
      var div = L.DivIcon.prototype.createIcon.call(this, old);
      window.JGStyles(div);
      return div;
    }
  });

  function cellIcon(p) {
    var size = Math.round(Math.min(60, 26 + 7 * Math.log10(Math.max(1, p.count)) * 2));
    var stops = [], acc = 0, total = p.count || 1;
    Object.keys(p.mechanisms || {}).sort().forEach(function (k) {
      var from = (acc / total) * 100;
      acc += p.mechanisms[k];
      stops.push(colourOf(k) + " " + from.toFixed(1) + "% " + ((acc / total) * 100).toFixed(1) + "%");
    });
    var title = JG.t("map.cell_title", { n: p.count }) + (p.overdue ? JG.t("map.cell_overdue", { n: p.overdue }) : "") + (p.escalated ? JG.t("map.cell_escalated", { n: p.escalated }) : "");
    var html =
      '<div class="jg-cell-ring" data-style="background: conic-gradient(' + stops.join(",") + ')" title="' + esc(title) + '">' +
      "<span>" + (p.count >= 10000 ? Math.round(p.count / 1000) + "k" : p.count) + "</span></div>" +
      (p.overdue ? '<b class="jg-cell-overdue" title="' + esc(JG.t("view.overdue")) + '">' + p.overdue + "</b>" : "");
    return new StyledIcon({
      html: html,
      className: "jg-cell" + (p.overdue ? " jg-has-overdue" : ""),
      iconSize: [size, size]
    });
  }

  function caseIcon(p) {
    var shape = (JG.cfg.status_shapes[p.status]) || "circle";
    var cls = "jg-inc jg-" + shape + " jg-sev-" + p.severity + (p.overdue ? " jg-overdue" : "") + (p.escalation_level > 0 ? " jg-escalated" : "");
    var html = '<i class="jg-mark" data-style="--c: ' + colourOf(p.mechanism) + '" data-code="' + esc(p.code) + '" data-id="' + esc(p.id) + '"></i>' +
      (p.escalation_level > 0 ? '<b class="jg-esc">' + p.escalation_level + "</b>" : "");
    return new StyledIcon({ html: html, className: cls, iconSize: [20, 20] });
  }

  // What a case's icon shows: when this changes, the marker is drawn anew.
  function drawnAs(p) { return [p.status, p.overdue, p.escalation_level, p.severity, p.mechanism].join("|"); }

  JG.incidentMarker = function (feature, latlng) {
    var p = feature.properties;
    if (p.kind === "cell") {
      return L.marker(latlng, { icon: cellIcon(p), keyboard: false, riseOnHover: true });
    }
    var marker = L.marker(latlng, { icon: caseIcon(p), title: p.code + " " + JG.t("category." + p.category) + " " + JG.t("status." + p.status), riseOnHover: true });
    marker._jgDrawn = drawnAs(p);
    return marker;
  };

  JG.incidentFeature = function (feature, layer) {
    var p = feature.properties;
    if (p.kind === "cell") {
      layer.on("click", function () {
        JG.map.setView(layer.getLatLng(), Math.min(JG.map.getZoom() + 2, JG.cfg.detail_zoom));
      });
      return;
    }
    layer.bindPopup('<div class="jg-popup jg-loading">' + esc(JG.t("map.loading_case", { code: p.code })) + "</div>", {
      maxWidth: 440, minWidth: 300,
      // keep the popup clear of the filters (left), the layer list and legend (right)
      autoPanPaddingTopLeft: L.point(310, 60), autoPanPaddingBottomRight: L.point(300, 40)
    });
    layer.on("popupclose", function () {
      if (JG.hold.popup === layer) JG.hold.popup = null;
      if (JG.container) JG.container._schedule();
    });
    layer.on("popupopen", function (e) {
      JG.hold.popup = layer;
      fetch(JG.cfg.urls.popup + encodeURIComponent(p.id), { credentials: "same-origin" })
        .then(function (r) { return r.text().then(function (t) { return { ok: r.ok, text: t }; }); })
        .then(function (res) {
          e.popup.setContent(res.ok ? res.text : '<div class="jg-popup">' + esc(JG.t("map.popup_failed", { code: p.code })) + "</div>");
          if (e.popup.getElement()) window.JGStyles(e.popup.getElement());
        })
        .catch(function (err) { e.popup.setContent('<div class="jg-popup">' + esc(JG.t("map.network_error", { error: err.message })) + "</div>"); });
    });
  };

  /* ---------------------------------------------------------------- heat map */

  function reloadHeat() {
    var heat = JG.handles.heat, map = JG.map;
    if (!map || !map.hasLayer(heat)) { JG.status.heat = null; return; }
    var params = L.extend({ bbox: bboxOf(map.getBounds().pad(0.2)), z: map.getZoom() }, JG.filterParams());
    if (JG._heatAbort) JG._heatAbort.abort();
    var abort = (JG._heatAbort = new AbortController());
    JG.status.heat = { state: "loading" };
    fetchJson(JG.cfg.urls.heat + "?" + query(params), abort.signal).then(function (data) {
      heat.setOptions({ max: Math.max(1, data.meta.max * 0.6) });
      heat.setLatLngs(data.points);
      JG.status.heat = { state: "loaded", points: data.points.length, max: data.meta.max };
      showStatus();
    }).catch(function (err) { noteError("heat", err); });
  }

  /* ---------------------------------------------------------------- status and readiness */

  function showStatus() {
    var el = document.getElementById("jg-status");
    if (!el) return;
    var s = JG.status.incidents, parts = [];
    if (s) {
      parts.push(JG.t("map.cases_in_view", { n: s.cases.toLocaleString() }) + (s.mode === "cells" ? JG.t("map.in_cells", { n: s.features }) : ""));
      parts.push(JG.t("map.updated", { at: s.at.toLocaleTimeString("zh-CN", { hour12: false, timeZone: "Asia/Shanghai" }), s: Math.round(JG.cfg.refresh_ms / 1000) }));
    } else {
      parts.push(JG.t("map.loading"));
    }
    if (JG.status.errors.length) parts.push("⚠ " + JG.status.errors[JG.status.errors.length - 1]);
    el.textContent = parts.join(" · ");
    el.classList.toggle("jg-error", JG.status.errors.length > 0);
  }

  // Ready once the incidents and every visible layer have answered (used by the page's tests
  // to time the first render).
  function checkReady() {
    if (JG.readyAt !== null || !JG.status.incidents) return;
    var pending = Object.keys(JG.status.layers).some(function (id) {
      var st = JG.status.layers[id].state;
      return st === "pending" || st === "loading";
    });
    if (pending) return;
    JG.readyAt = performance.now();
    document.documentElement.setAttribute("data-jg-ready", String(Math.round(JG.readyAt)));
  }

  /* ---------------------------------------------------------------- filters form */

  function readForm(form) {
    var values = {};
    Array.prototype.forEach.call(form.elements, function (el) {
      if (!el.name) return;
      if (el.tagName === "SELECT" && el.multiple) {
        var chosen = Array.prototype.filter.call(el.options, function (o) { return o.selected; }).map(function (o) { return o.value; });
        if (el.name === "status") {
          if (chosen.indexOf("all") >= 0) chosen = ["all"];
          else if (chosen.indexOf("open") >= 0) chosen = ["open"].concat(chosen.filter(function (v) { return v !== "open"; }));
          values.status = chosen.join(",") === "open" ? "" : chosen.join(",");
        } else {
          values[el.name] = chosen.join(",");
        }
      } else {
        values[el.name] = el.name === "window" && el.value === "all" ? "" : el.value;
      }
    });
    return values;
  }

  function applyFilters() {
    var values = readForm(document.getElementById("jg-filters"));
    Object.keys(values).forEach(function (k) { setSearchParam(k, values[k]); });
    JG.refresh();
  }

  JG.refresh = function () {
    JG.handles.incidents.update();
    reloadHeat();
  };

  function bindForm() {
    var form = document.getElementById("jg-filters");
    if (!form) return;
    L.DomEvent.disableClickPropagation(form);
    L.DomEvent.disableScrollPropagation(form);
    form.addEventListener("change", applyFilters);
    form.addEventListener("submit", function (ev) { ev.preventDefault(); });
    document.getElementById("jg-reset").addEventListener("click", function () {
      JG.cfg.filter_keys.forEach(function (k) { setSearchParam(k, null); });
      window.location.reload();
    });
    document.getElementById("jg-copy").addEventListener("click", function (ev) {
      var btn = ev.currentTarget;
      var done = function () { btn.textContent = JG.t("map.copied"); setTimeout(function () { btn.textContent = JG.t("map.copy_link"); }, 1500); };
      if (navigator.clipboard && window.isSecureContext) navigator.clipboard.writeText(window.location.href).then(done, function () {});
      else window.prompt(JG.t("map.link_prompt"), window.location.href);
    });
    var legend = document.getElementById("jg-legend");
    if (legend) { L.DomEvent.disableClickPropagation(legend); L.DomEvent.disableScrollPropagation(legend); }
  }

  /* ---------------------------------------------------------------- visible layers in the URL */

  function trackOverlays(map, handles) {
    var names = {};
    Object.keys(handles.layers).forEach(function (id) { names[L.stamp(handles.layers[id])] = id; });
    names[L.stamp(handles.incidents)] = "incidents";
    names[L.stamp(handles.heat)] = "heat";
    var write = function () {
      var on = Object.keys(names).filter(function (k) {
        var id = names[k];
        var layer = id === "incidents" ? handles.incidents : id === "heat" ? handles.heat : handles.layers[id];
        return map.hasLayer(layer);
      }).map(function (k) { return names[k]; }).sort();
      var same = on.join(",") === JG.cfg.default_layers.slice().sort().join(",");
      setSearchParam("layers", same ? null : on.join(","));
    };
    map.on("overlayadd overlayremove", function (e) {
      if (e.layer === handles.heat) reloadHeat();
      if (e.layer === handles.incidents) {
        if (e.type === "overlayadd") handles.incidents.start(); else handles.incidents.stop();
      }
      write();
    });
  }

  /* ---------------------------------------------------------------- start */

  JG.init = function (map, cfg, handles) {
    JG.map = map;
    JG.cfg = cfg;
    JG.handles = handles;
    var view = viewFromHash();
    if (view) map.setView([view.lat, view.lon], view.zoom, { animate: false });
    else map.fitBounds(cfg.bounds, { animate: false, padding: [10, 10] });
    JG.started = true;
    map.attributionControl.setPrefix('<a href="/map">JointGrid</a> · Leaflet');
    map.on("moveend", function () {
      writeHash();
      // A pan inside the box already fetched (opening a popup pans the map) needs no refetch:
      // the next timed refresh comes anyway, and refetching now would close that popup.
      var box = JG._incidentBox;
      var inside = box && box.z === map.getZoom() && box.bounds.contains(map.getBounds());
      if (map.hasLayer(handles.incidents) && !inside) handles.incidents.update();
      if (!inside) reloadHeat();
    });
    handles.incidents.on("update", function () {
      if (JG.container) JG.container.flush();
      showStatus();
      checkReady();
    });
    Object.keys(handles.layers).forEach(function (id) {
      if (map.hasLayer(handles.layers[id])) handles.layers[id].reload();
    });
    if (map.hasLayer(handles.incidents)) handles.incidents.start();
    else JG.status.incidents = { mode: "off", features: 0, cases: 0, at: new Date(), ms: 0 };
    reloadHeat();
    bindForm();
    trackOverlays(map, handles);
    syncLinks();
    writeHash();
    showStatus();
    checkReady();
  };
})();
