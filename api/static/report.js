/* JointGrid report page: make a report, keep it on the phone until the server has it.
 *
 * A report gets its Idempotency-Key (a UUID) when it is made, and is stored with it in
 * localStorage. The queue is sent in order whenever the network is there: on a 2xx the report
 * leaves the queue; on a 4xx the server's message is shown and it leaves the queue too (except
 * 401, 403, 408 and 429, which say nothing about the report itself); on a 5xx or no network
 * it stays and is sent again later with the same key, so the server makes one case, once.
 *
 * What the worker typed stays in the form until the server has the report, or the report is
 * safe in the queue; a refused report puts everything back into the form. Every text comes
 * from the message catalogue (CFG.text), Chinese first.
 * Photos (camera or gallery) go with the report: their blobs wait in IndexedDB under the
 * report's key, and the report is then sent as multipart/form-data (part "report" = the JSON,
 * parts "media" = the photos) under that same key. The server treats a retry with the same
 * JSON and the same photos as the same report, so a photo is stored once however often the
 * answer is lost; once a 2xx (or a refusal) is in, the blobs are deleted and never sent again.
 */
(function () {
  "use strict";

  var CFG = JSON.parse(document.getElementById("report-config").textContent);
  var QUEUE = "jointgrid.report.queue.v1";
  var SENT = "jointgrid.report.sent.v1";
  var KEEP_SENT = 20;
  var RETRY_MS = 15000;
  var KEEP_QUEUED = { 401: 1, 403: 1, 408: 1, 429: 1 };
  var MINE = "jointgrid.report.mine.v1";

  // A text of the catalogue with its {fields} filled in.
  function T(key, params) {
    var s = CFG.text[key];
    if (s === undefined) return key;
    return s.replace(/\{(\w+)\}/g, function (m, k) {
      return params && params[k] !== undefined && params[k] !== null ? String(params[k]) : m;
    });
  }
  function nameOf(kind, code) {
    var s = CFG.text[kind + "." + code];
    return s === undefined ? String(code) : s;
  }
  function sideName(code) {
    return CFG.text["side." + code + ".short"] || CFG.text["side." + code] || String(code);
  }

  var MEDIA = CFG.media || { max_count: 9, max_bytes: 10485760 };
  var $ = function (id) { return document.getElementById(id); };
  var form = $("report");
  var state = { lon: null, lat: null, crs: null, source: null, marker: null, accuracy: null, accuracy_m: null };

  /* ------------------------------------------------------------ storage */

  function load(key) {
    try {
      var v = JSON.parse(window.localStorage.getItem(key) || "[]");
      return Array.isArray(v) || (key === MINE && v) ? v : [];
    } catch (e) {
      return [];
    }
  }

  function save(key, value) {
    window.localStorage.setItem(key, JSON.stringify(value));
  }

  /* Photo blobs, in IndexedDB (localStorage holds text only): one record per photo, keyed
   * "<report key>:<n>", with the report key as an index to find and drop them together. */
  var DB_NAME = "jointgrid-report", STORE = "photos";
  var dbPromise = null;

  function db() {
    if (!dbPromise) {
      dbPromise = new Promise(function (resolve, reject) {
        if (!window.indexedDB) { reject(new Error("no IndexedDB")); return; }
        var req = window.indexedDB.open(DB_NAME, 1);
        req.onupgradeneeded = function () {
          var os = req.result.createObjectStore(STORE, { keyPath: "id" });
          os.createIndex("report", "report", { unique: false });
        };
        req.onsuccess = function () { resolve(req.result); };
        req.onerror = function () { reject(req.error); };
      });
    }
    return dbPromise;
  }

  function tx(mode, work) {
    return db().then(function (d) {
      return new Promise(function (resolve, reject) {
        var t = d.transaction(STORE, mode);
        var out = work(t.objectStore(STORE));
        t.oncomplete = function () { resolve(out && out.result !== undefined ? out.result : out); };
        t.onerror = function () { reject(t.error); };
        t.onabort = function () { reject(t.error || new Error("aborted")); };
      });
    });
  }

  function putPhotos(key, files) {
    return tx("readwrite", function (os) {
      files.forEach(function (f, i) {
        os.put({ id: key + ":" + i, report: key, n: i, blob: f, name: f.name || ("photo" + i), type: f.type || "" });
      });
    });
  }

  function getPhotos(key) {
    return tx("readonly", function (os) { return os.index("report").getAll(key); }).then(function (rows) {
      return (rows || []).sort(function (a, b) { return a.n - b.n; });
    });
  }

  function dropPhotos(key) {
    return tx("readwrite", function (os) {
      var req = os.index("report").openKeyCursor(IDBKeyRange.only(key));
      req.onsuccess = function () {
        var c = req.result;
        if (c) { os.delete(c.primaryKey); c.continue(); }
      };
    }).catch(function () {});
  }

  // Blobs whose report is neither queued any more nor being made: left by a closed tab.
  function dropOrphans() {
    var keep = {};
    load(QUEUE).forEach(function (q) { keep[q.key] = 1; });
    return tx("readwrite", function (os) {
      var req = os.openCursor();
      req.onsuccess = function () {
        var c = req.result;
        if (c) { if (!keep[c.value.report]) os.delete(c.primaryKey); c.continue(); }
      };
    }).catch(function () {});
  }

  function uuid() {
    if (window.crypto && typeof window.crypto.randomUUID === "function") return window.crypto.randomUUID();
    // Pages served over plain http to a phone are not a secure context: build a version 4
    // UUID from the random bytes every browser offers.
    var b = new Uint8Array(16);
    window.crypto.getRandomValues(b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    var h = Array.prototype.map.call(b, function (x) { return (x + 0x100).toString(16).slice(1); }).join("");
    return h.slice(0, 8) + "-" + h.slice(8, 12) + "-" + h.slice(12, 16) + "-" + h.slice(16, 20) + "-" + h.slice(20);
  }

  // Times are shown in China Standard Time, as the teams on both sides read them.
  function localTime(iso) {
    if (!iso) return "—";
    var d = new Date(iso);
    if (isNaN(d)) return iso;
    try {
      return d.toLocaleString("zh-CN", {
        timeZone: "Asia/Shanghai", hour12: false, month: "numeric", day: "numeric", hour: "2-digit", minute: "2-digit"
      });
    } catch (e) {
      return d.toLocaleString();
    }
  }

  function text(tag, value, cls) {
    var el = document.createElement(tag);
    el.textContent = value;
    if (cls) el.className = cls;
    return el;
  }

  /* ------------------------------------------------------------ the map */

  // The map is a help, never a need: the form works before Leaflet has arrived over a slow
  // link (it loads asynchronously), and without it (the text-only form, or no library at all)
  // the worker uses GPS or types the numbers.
  var map = null;
  function initMap() {
    if (map || !window.L || !document.getElementById("map")) return;
    map = L.map("map", { zoomControl: true, attributionControl: true, maxZoom: 19, minZoom: 6 });
    map.attributionControl.setPrefix("JointGrid · Leaflet");
    if (CFG.tiles_url) L.tileLayer(CFG.tiles_url, { attribution: CFG.tiles_attribution || "", maxZoom: 19 }).addTo(map);
    map.fitBounds(CFG.bounds);
    CFG.layers.forEach(drawLayer);
    map.on("click", function (e) {
      // A tap is in the map's own frame: WGS84, or GCJ-02 when the base map is Amap or Tencent.
      setLocation(e.latlng.lng, e.latlng.lat, CFG.map_crs, "map");
      showPoint(e.latlng.lat, e.latlng.lng);
    });
    if (state.lon !== null && state.crs === CFG.map_crs) showPoint(state.lat, state.lon);
  }
  var leafletScript = document.getElementById("leaflet-js");
  if (window.L) initMap();
  else if (leafletScript) leafletScript.addEventListener("load", initMap);

  function drawLayer(spec) {
    var layer = L.geoJSON(null, { style: spec.style, interactive: false }).addTo(map);
    var loadedZoom = null;
    var reload = function () {
      var z = Math.round(map.getZoom());
      if (spec.min_zoom && z < spec.min_zoom) { layer.clearLayers(); loadedZoom = null; return; }
      if (!spec.by_bbox && loadedZoom !== null) return;
      // An outline comes at its own zoom's detail (the URL the service worker keeps).
      var params = "z=" + (spec.z || z);
      if (spec.by_bbox) {
        var b = map.getBounds().pad(0.3);
        params += "&bbox=" + [b.getWest(), b.getSouth(), b.getEast(), b.getNorth()].map(function (x) { return x.toFixed(5); }).join(",");
      }
      fetch(spec.url + "?" + params, { credentials: "same-origin" })
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (fc) { if (fc) { layer.clearLayers(); layer.addData(fc); loadedZoom = z; } })
        .catch(function () { /* the map is only a help: the report works without it */ });
    };
    map.on("moveend", reload);
    reload();
  }

  function showPoint(lat, lon, accuracy) {
    if (!map) return;
    var ll = L.latLng(lat, lon);
    if (!state.marker) state.marker = L.marker(ll, { keyboard: false }).addTo(map);
    else state.marker.setLatLng(ll);
    if (state.accuracy) { map.removeLayer(state.accuracy); state.accuracy = null; }
    if (accuracy) state.accuracy = L.circle(ll, { radius: accuracy, weight: 1, fillOpacity: 0.1 }).addTo(map);
  }


  /* ------------------------------------------------------------ location and where it came from */

  // GPS is WGS84 and a map tap is in the map's frame: no question. Typed or pasted numbers
  // come with the question of where they came from, in plain words, and no default.
  function setLocation(lon, lat, crs, source, accuracy) {
    state.lon = lon;
    state.lat = lat;
    state.crs = crs;
    state.source = source;
    state.accuracy_m = accuracy || null;
    $("lon").value = lon.toFixed(6);
    $("lat").value = lat.toFixed(6);
    $("source").hidden = true;
    showDeclared();
  }

  function clearLocation() {
    state.lon = null; state.lat = null; state.crs = null; state.source = null; state.accuracy_m = null;
    $("lon").value = ""; $("lat").value = "";
    $("source").hidden = true;
    form.querySelectorAll("input[name=crs]").forEach(function (r) { r.checked = false; });
    if (map && state.marker) { map.removeLayer(state.marker); state.marker = null; }
    if (map && state.accuracy) { map.removeLayer(state.accuracy); state.accuracy = null; }
    showDeclared();
  }

  function showDeclared() {
    var el = $("declared");
    if (state.lon === null) {
      el.textContent = T("report.no_location");
      el.className = "declared";
      return;
    }
    var how = T("report.how." + state.source);
    if (state.source === "typed" && state.crs) how += " · " + T("report.source." + state.crs);
    if (state.accuracy_m) how += " · " + T("report.accuracy", { m: Math.round(state.accuracy_m) });
    el.textContent = state.lon.toFixed(6) + ", " + state.lat.toFixed(6) + " · " + how;
    el.className = state.crs ? "declared set" : "declared";
  }

  $("gps").addEventListener("click", function () {
    var btn = $("gps");
    if (!navigator.geolocation) { showFormError(T("report.no_geolocation")); return; }
    btn.disabled = true;
    btn.textContent = T("report.locating");
    navigator.geolocation.getCurrentPosition(function (pos) {
      btn.disabled = false;
      btn.textContent = T("report.use_gps");
      // The browser's geolocation is always WGS84.
      setLocation(pos.coords.longitude, pos.coords.latitude, "wgs84", "gps", pos.coords.accuracy);
      showPoint(pos.coords.latitude, pos.coords.longitude, pos.coords.accuracy);
      if (map) map.setView([pos.coords.latitude, pos.coords.longitude], Math.max(map.getZoom(), 15));
    }, function (err) {
      btn.disabled = false;
      btn.textContent = T("report.use_gps");
      showFormError(T("report.gps_failed", { reason: err.message }));
    }, { enableHighAccuracy: true, timeout: 20000, maximumAge: 0 });
  });

  function typed() {
    var lon = parseFloat($("lon").value), lat = parseFloat($("lat").value);
    var chosen = form.querySelector("input[name=crs]:checked");
    if (isFinite(lon) && isFinite(lat)) {
      state.lon = lon; state.lat = lat; state.source = "typed"; state.accuracy_m = null;
      state.crs = chosen ? chosen.value : null;
      $("source").hidden = false;
      if (state.crs === CFG.map_crs) showPoint(lat, lon);
    } else {
      state.lon = null; state.lat = null;
    }
    showDeclared();
  }
  $("lon").addEventListener("input", typed);
  $("lat").addEventListener("input", typed);
  form.querySelectorAll("input[name=crs]").forEach(function (r) { r.addEventListener("change", typed); });

  /* ------------------------------------------------------------ photos */

  var picked = [];  // File objects chosen for the report being made

  function addFiles(list) {
    showFormError("");
    Array.prototype.forEach.call(list || [], function (f) {
      if (picked.length >= MEDIA.max_count) {
        showFormError(T("report.photos.too_many", { n: MEDIA.max_count }));
        return;
      }
      if (f.size > MEDIA.max_bytes) {
        showFormError(T("report.photos.too_large", { mb: (f.size / 1048576).toFixed(1), max: (MEDIA.max_bytes / 1048576).toFixed(1) }));
        return;
      }
      picked.push(f);
    });
    renderPicked();
  }

  function renderPicked() {
    var ul = $("photo-list");
    ul.querySelectorAll("img").forEach(function (img) { URL.revokeObjectURL(img.src); });
    ul.textContent = "";
    picked.forEach(function (f, i) {
      var li = document.createElement("li");
      li.className = "picked";
      var img = document.createElement("img");
      img.alt = f.name || "photo";
      img.src = URL.createObjectURL(f);
      li.appendChild(img);
      var rm = text("button", "×");
      rm.type = "button";
      rm.setAttribute("aria-label", T("report.photos.remove"));
      rm.addEventListener("click", function () { picked.splice(i, 1); renderPicked(); });
      li.appendChild(rm);
      li.appendChild(text("small", (f.size / 1048576).toFixed(1) + " MB"));
      ul.appendChild(li);
    });
  }

  // The photos of a queued report back into the form (a refused report is corrected, not lost).
  function restorePhotos(key) {
    return getPhotos(key).then(function (rows) {
      picked = rows.map(function (r) { return new File([r.blob], r.name, { type: r.type || r.blob.type }); });
      renderPicked();
    }).catch(function () {});
  }

  ["photo-camera", "photo-gallery"].forEach(function (id) {
    var input = $(id);
    if (!input) return;
    input.addEventListener("change", function () { addFiles(input.files); input.value = ""; });
  });

  /* ------------------------------------------------------------ making a report */

  function showFormError(message) {
    var el = $("form-error");
    el.textContent = message;
    el.hidden = !message;
  }

  function formEmpty() {
    return !$("category").value && !$("description").value.trim() && state.lon === null;
  }

  // Put a report's fields back into the form: a refused report keeps everything typed.
  function restore(body, where) {
    $("category").value = body.category || "";
    var sev = form.querySelector("input[name=severity][value='" + body.severity + "']");
    if (sev) sev.checked = true;
    $("description").value = body.description || "";
    var p = body.location && body.location.coordinates;
    if (p) {
      var source = (where && where.source) || "typed";
      setLocation(p[0], p[1], body.crs, source, where && where.accuracy_m);
      if (source === "typed") {
        $("source").hidden = false;
        var r = form.querySelector("input[name=crs][value='" + body.crs + "']");
        if (r) r.checked = true;
      }
      if (body.crs === CFG.map_crs) showPoint(p[1], p[0]);
    }
  }

  form.addEventListener("submit", function (ev) {
    ev.preventDefault();
    showFormError("");
    var category = $("category").value;
    if (!category) { showFormError(T("report.need_category")); $("category").focus(); return; }
    if (state.lon === null) { showFormError(T("report.need_location")); return; }
    if (!state.crs) { showFormError(T("report.need_source")); $("source").scrollIntoView({ block: "center" }); return; }
    var severity = (form.querySelector("input[name=severity]:checked") || {}).value;
    var item = {
      key: uuid(),
      made_at: new Date().toISOString(),
      attempts: 0,
      last_error: null,
      where: { source: state.source, accuracy_m: state.accuracy_m },
      photos: picked.length,
      body: {
        location: { type: "Point", coordinates: [state.lon, state.lat] },
        crs: state.crs,
        category: category,
        severity: severity,
        description: $("description").value.trim(),
        occurred_at: new Date().toISOString()
      }
    };
    var files = picked.slice();
    // The photos are on the phone before the report is queued: a queued report never lacks them.
    var stored = files.length ? putPhotos(item.key, files) : Promise.resolve();
    $("send").disabled = true;
    stored.then(function () {
      var queue = load(QUEUE);
      queue.push(item);
      save(QUEUE, queue);
      // The report is safe in the queue now. The next one starts afresh: the location above
      // all must be set again, never silently reused.
      $("description").value = "";
      $("category").value = "";
      clearLocation();
      picked = [];
      renderPicked();
      render();
      flush();
    }, function (err) {
      showFormError(T("report.photos.not_kept", { reason: err && err.message }));
    }).then(function () { $("send").disabled = false; });
  });

  /* ------------------------------------------------------------ sending the queue */

  var flushing = false;

  function headers(key, json) {
    // Errors come back in Chinese: the server renders each error code's catalogue template.
    var h = { "Idempotency-Key": key, Accept: "application/json", "Accept-Language": "zh-CN" };
    if (json) h["Content-Type"] = "application/json";  // multipart sets its own, with the boundary
    var csrf = document.querySelector('meta[name="csrf-token"]');
    if (csrf) h["X-CSRF-Token"] = csrf.getAttribute("content");
    return h;
  }

  function update(key, change) {
    var queue = load(QUEUE);
    queue.forEach(function (q) { if (q.key === key) change(q); });
    save(QUEUE, queue);
  }

  function remove(key) {
    save(QUEUE, load(QUEUE).filter(function (q) { return q.key !== key; }));
    dropPhotos(key);
  }

  // The request body: the JSON alone, or the JSON and the photos as multipart/form-data.
  function requestBody(item) {
    if (!item.photos) return Promise.resolve(JSON.stringify(item.body));
    return getPhotos(item.key).then(function (rows) {
      if (rows.length !== item.photos) {
        var e = new Error(T("report.photos.missing"));
        e.photos = true;
        throw e;
      }
      var fd = new FormData();
      fd.append("report", JSON.stringify(item.body));
      rows.forEach(function (r) { fd.append("media", r.blob, r.name); });
      return fd;
    });
  }

  function remember(entry) {
    var sent = load(SENT);
    sent.unshift(entry);
    save(SENT, sent.slice(0, KEEP_SENT));
  }

  // Send the oldest report; resolve true to go on with the next one, false to stop for now.
  function sendOne(item) {
    update(item.key, function (q) { q.attempts += 1; q.sending = true; });
    render();
    return requestBody(item).then(function (body) {
      return fetch(CFG.post_url, {
        method: "POST",
        headers: headers(item.key, typeof body === "string"),
        body: body,
        credentials: "same-origin",
        cache: "no-store"
      });
    }).then(function (r) {
      return r.json().catch(function () { return null; }).then(function (body) {
        if (r.ok) {
          remove(item.key);
          remember({ key: item.key, ok: true, status: r.status, made_at: item.made_at, case: body, body: item.body, photos: item.photos || 0 });
          announce = "results";
          loadMine();
          return true;
        }
        if (r.status >= 400 && r.status < 500 && !KEEP_QUEUED[r.status]) {
          remember({ key: item.key, ok: false, status: r.status, made_at: item.made_at, error: body, body: item.body, where: item.where });
          announce = "rejected";
          // A refused report keeps everything: its fields and its photos go back into the
          // form (when the worker has not started another one meanwhile).
          var back = formEmpty() ? restorePhotos(item.key).then(function () { restore(item.body, item.where); }) : Promise.resolve();
          return back.then(function () { remove(item.key); return true; });
        }
        update(item.key, function (q) {
          q.sending = false;
          q.last_error = (body && body.message) || T("report.server_said", { status: r.status });
          q.last_status = r.status;
        });
        return false;
      });
    }, function (err) {
      var why = err && err.photos ? err.message : T("report.no_network");
      update(item.key, function (q) { q.sending = false; q.last_error = why; q.last_status = null; });
      return false;
    });
  }

  function drain() {
    var queue = load(QUEUE);
    if (!queue.length || !navigator.onLine) return Promise.resolve();
    return sendOne(queue[0]).then(function (goOn) {
      render();
      return goOn ? drain() : undefined;
    });
  }

  function flush() {
    if (flushing) return Promise.resolve();
    flushing = true;
    // One sender at a time, across tabs too where the browser has Web Locks.
    var run = navigator.locks && navigator.locks.request
      ? navigator.locks.request("jointgrid-report-queue", drain)
      : drain();
    return Promise.resolve(run).catch(function () {}).then(function () {
      flushing = false;
      load(QUEUE).forEach(function (q) { if (q.sending) update(q.key, function (x) { x.sending = false; }); });
      render();
    });
  }

  window.addEventListener("online", function () { showNet(); flush(); loadMine(); });
  window.addEventListener("offline", showNet);
  document.addEventListener("visibilitychange", function () { if (!document.hidden) flush(); });
  window.addEventListener("storage", function (e) { if (e.key === QUEUE || e.key === SENT) render(); });
  setInterval(function () { if (load(QUEUE).length) flush(); }, RETRY_MS);

  /* ------------------------------------------------------------ showing it */

  function showNet() {
    var el = $("net");
    el.textContent = navigator.onLine ? T("report.online") : T("report.offline");
    el.className = navigator.onLine ? "net" : "net off";
  }

  // The server's own words (in Chinese: the request asks for it), and what to fix.
  function plainError(entry) {
    var e = entry.error || {};
    var lines = [e.message || T("report.rejected.status", { status: entry.status })];
    var d = e.detail;
    if (Array.isArray(d)) {
      d.forEach(function (p) { if (p && p.field && p.problem && lines[0].indexOf(p.field) < 0) lines.push(p.field + ": " + p.problem); });
    }
    return lines.join(" ");
  }

  // After a send, bring its answer into view and give it the focus (for screen readers too).
  var announce = null;

  function dl(rows) {
    var el = document.createElement("dl");
    rows.forEach(function (r) { el.appendChild(text("dt", r[0])); el.appendChild(text("dd", r[1], r[2])); });
    return el;
  }

  function sentItem(s) {
    var li = document.createElement("li");
    li.setAttribute("data-key", s.key);
    li.tabIndex = -1;
    var c = s.case;
    li.className = "ok";
    var lead = (c.teams || []).filter(function (t) { return t.lead; })[0];
    li.appendChild(text("b", c.code, "code"));
    var sides = (c.sides || []).map(sideName).join("、") + (c.cross_boundary ? " · " + T("report.sent.cross") : "");
    li.appendChild(dl([
      [T("report.sent.category"), nameOf("category", c.category)],
      [T("report.sent.mechanism"), c.mechanism ? nameOf("mechanism", c.mechanism) : T("report.sent.single_side", { side: sideName(c.side) }), "mechanism"],
      [T("report.sent.lead_team"), lead ? lead.name + "（" + lead.code + "）" : T("report.sent.lead_grid", { side: sideName(c.lead_side || c.side) }), "lead-team"],
      [T("report.sent.sides"), sides, "sides"],
      [T("report.sent.due"), localTime(c.due_at), "due"]
    ].concat(s.photos ? [[T("report.sent.photos"), T("report.queue.photos", { n: s.photos }), "photos"]] : [])));
    if (c.possible_duplicate_of) {
      var dup = c.possible_duplicate_of;
      li.appendChild(text("p", T("report.sent.duplicate", { code: dup.code || dup.id || dup }), "duplicate"));
    }
    if (CFG.map_page) {
      // Only for keys that may open the command-centre map: no link leads to a refusal.
      var a = document.createElement("a");
      var p = c.location && c.location.coordinates;
      a.href = CFG.map_page + "?status=all" + (p ? "#17/" + p[1].toFixed(5) + "/" + p[0].toFixed(5) : "");
      a.textContent = T("report.sent.on_map");
      li.appendChild(a);
    }
    return li;
  }

  function rejectedItem(s) {
    var li = document.createElement("li");
    li.setAttribute("data-key", s.key);
    li.tabIndex = -1;
    li.className = "rejected";
    li.appendChild(text("b", nameOf("category", s.body.category) + " · " + localTime(s.made_at)));
    li.appendChild(text("p", plainError(s), "error"));
    li.appendChild(text("p", T("report.rejected.kept"), "hint"));
    var btn = text("button", T("report.rejected.edit"), "secondary edit");
    btn.type = "button";
    btn.addEventListener("click", function () {
      restore(s.body, s.where);
      $("category").scrollIntoView({ block: "start" });
      $("category").focus();
    });
    li.appendChild(btn);
    return li;
  }

  function render() {
    var queue = load(QUEUE);
    var ul = $("queue");
    ul.textContent = "";
    queue.forEach(function (q) {
      var li = document.createElement("li");
      li.className = "queued";
      li.setAttribute("data-key", q.key);
      li.appendChild(text("b", nameOf("category", q.body.category)));
      li.appendChild(text("span", " " + T("report.queue.made", { time: localTime(q.made_at) }) + (q.photos ? " · " + T("report.queue.photos", { n: q.photos }) : "")));
      var st = q.sending ? T("report.queue.sending") : q.last_error ? T("report.queue.retry", { reason: q.last_error }) : (navigator.onLine ? T("report.queue.queued") : T("report.queue.waiting"));
      li.appendChild(text("small", st + (q.attempts ? " · " + T("report.queue.tries", { n: q.attempts }) : "")));
      ul.appendChild(li);
    });
    $("queue-card").hidden = queue.length === 0;

    // Rebuilding the lists must not drop the focus an answer was given.
    var focused = document.activeElement && document.activeElement.closest && document.activeElement.closest("#results li, #rejected li");
    var focusKey = focused ? focused.getAttribute("data-key") : null;
    var sent = load(SENT);
    var ok = sent.filter(function (s) { return s.ok && s.case; });
    var refused = sent.filter(function (s) { return !s.ok; });
    var rl = $("results");
    rl.textContent = "";
    ok.forEach(function (s) { rl.appendChild(sentItem(s)); });
    $("results-card").hidden = ok.length === 0;
    var jl = $("rejected");
    jl.textContent = "";
    refused.slice(0, 3).forEach(function (s) { jl.appendChild(rejectedItem(s)); });
    $("rejected-card").hidden = refused.length === 0;

    if (focusKey) {
      var again = document.querySelector("#results li[data-key='" + focusKey + "'], #rejected li[data-key='" + focusKey + "']");
      if (again) again.focus({ preventScroll: true });
    }
    if (announce) {
      var target = announce === "results" ? rl.firstChild : jl.firstChild;
      announce = null;
      if (target) {
        target.scrollIntoView({ block: "start", behavior: "smooth" });
        target.focus({ preventScroll: true });
      }
    }
  }

  /* ------------------------------------------------------------ my reports, from the server */

  function mineItem(c) {
    var li = document.createElement("li");
    li.setAttribute("data-code", c.code);
    li.appendChild(text("b", c.code, "code"));
    li.appendChild(text("span", " " + nameOf("category", c.category)));
    li.appendChild(text("span", nameOf("status", c.status), "status status-" + c.status));
    li.appendChild(text("small", localTime(c.reported_at)));
    return li;
  }

  function showMine() {
    var kept = load(MINE);
    var ul = $("mine");
    ul.textContent = "";
    var items = (kept && kept.items) || [];
    items.forEach(function (c) { ul.appendChild(mineItem(c)); });
    if (!items.length) ul.appendChild(text("li", T("report.mine.empty"), "hint"));
    $("mine-note").textContent = kept && kept.at
      ? T("report.mine.as_of", { time: localTime(kept.at) }) + (navigator.onLine ? "" : " · " + T("report.mine.offline"))
      : "";
  }

  // The worker's own reports with their status as the server has it now, not as the phone
  // remembers them; the last answer is kept for when there is no signal.
  function loadMine() {
    if (!CFG.mine_url || !navigator.onLine) { showMine(); return; }
    fetch(CFG.mine_url, { credentials: "same-origin", headers: { Accept: "application/json" }, cache: "no-store" })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (doc) {
        var list = doc && (doc.items || doc.incidents || doc.features || (Array.isArray(doc) ? doc : null));
        if (list) save(MINE, { at: new Date().toISOString(), items: list.slice(0, 20).map(function (c) {
          return { code: c.code, category: c.category, status: c.status, reported_at: c.reported_at };
        }) });
        showMine();
      }, function () { showMine(); });
  }
  $("mine-refresh").addEventListener("click", loadMine);

  /* ------------------------------------------------------------ opening with no signal */

  // The service worker keeps the page, its files and its map layers, so that after one visit
  // the page opens with no signal; the queue above keeps the reports themselves.
  if (CFG.service_worker && "serviceWorker" in navigator) {
    navigator.serviceWorker.register(CFG.service_worker, { scope: "/report" }).catch(function () {});
  }

  showNet();
  render();
  loadMine();
  dropOrphans().then(flush);
  // The form can be sent from now on (bench/fieldpage.py measures the time to here).
  document.documentElement.setAttribute("data-jg-usable", String(Math.round(performance.now())));
})();
