/* JointGrid report page: make a report, keep it on the phone until the server has it.
 *
 * A report gets its Idempotency-Key (a UUID) when it is made, and is stored with it in
 * localStorage. The queue is sent in order whenever the network is there: on a 2xx the report
 * leaves the queue; on a 4xx the server's message is shown and it leaves the queue too (except
 * 401, 403, 408 and 429, which say nothing about the report itself); on a 5xx or no network
 * it stays and is sent again later with the same key, so the server makes one case, once.
 *
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

  var MEDIA = CFG.media || { max_count: 9, max_bytes: 10485760 };
  var $ = function (id) { return document.getElementById(id); };
  var form = $("report");
  var state = { lon: null, lat: null, crs: "wgs84", source: null, marker: null, accuracy: null };

  /* ------------------------------------------------------------ storage */

  function load(key) {
    try {
      var v = JSON.parse(window.localStorage.getItem(key) || "[]");
      return Array.isArray(v) ? v : [];
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
      return d.toLocaleString("zh-CN", { timeZone: "Asia/Shanghai", hour12: false }) + " CST";
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

  var map = L.map("map", { zoomControl: true, attributionControl: true, maxZoom: 19, minZoom: 6 });
  map.attributionControl.setPrefix("JointGrid · Leaflet");
  if (CFG.tiles_url) L.tileLayer(CFG.tiles_url, { attribution: CFG.tiles_attribution || "", maxZoom: 19 }).addTo(map);
  map.fitBounds(CFG.bounds);

  CFG.layers.forEach(function (spec) {
    var layer = L.geoJSON(null, { style: spec.style, interactive: false }).addTo(map);
    var loadedZoom = null;
    var reload = function () {
      var z = Math.round(map.getZoom());
      if (spec.min_zoom && z < spec.min_zoom) { layer.clearLayers(); loadedZoom = null; return; }
      if (!spec.by_bbox && loadedZoom !== null) return;
      var params = "z=" + z;
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
  });

  function showPoint(lat, lon, accuracy) {
    var ll = L.latLng(lat, lon);
    if (!state.marker) state.marker = L.marker(ll, { keyboard: false }).addTo(map);
    else state.marker.setLatLng(ll);
    if (state.accuracy) { map.removeLayer(state.accuracy); state.accuracy = null; }
    if (accuracy) state.accuracy = L.circle(ll, { radius: accuracy, weight: 1, fillOpacity: 0.1 }).addTo(map);
  }

  map.on("click", function (e) {
    // A tap is in the map's own frame: WGS84, or GCJ-02 when the base map is Amap or Tencent.
    setLocation(e.latlng.lng, e.latlng.lat, CFG.map_crs, "map");
    showPoint(e.latlng.lat, e.latlng.lng);
  });

  /* ------------------------------------------------------------ location and its CRS */

  function setLocation(lon, lat, crs, source) {
    state.lon = lon;
    state.lat = lat;
    state.crs = crs;
    state.source = source;
    $("lon").value = lon.toFixed(6);
    $("lat").value = lat.toFixed(6);
    $("crs").value = crs;
    showDeclared();
  }

  function showDeclared() {
    var el = $("declared");
    if (state.lon === null) {
      el.textContent = "No location yet 尚未选择位置";
      el.className = "declared";
      return;
    }
    var how = { gps: "from the phone's GPS 手机定位", map: "tapped on the map 地图点选", typed: "typed in 手动输入" }[state.source] || "";
    el.textContent = "";
    el.appendChild(text("b", CFG.crs_names[state.crs] || state.crs, "crs-badge"));
    el.appendChild(document.createTextNode(" " + state.lon.toFixed(6) + ", " + state.lat.toFixed(6) + " · " + how));
    el.className = "declared set";
  }

  $("gps").addEventListener("click", function () {
    var btn = $("gps");
    if (!navigator.geolocation) { showFormError("This browser cannot read the location; tap the map instead. 无法定位，请在地图上点选。"); return; }
    btn.disabled = true;
    btn.textContent = "Locating… 定位中";
    navigator.geolocation.getCurrentPosition(function (pos) {
      btn.disabled = false;
      btn.textContent = "Use my location 使用定位";
      // The browser's geolocation is always WGS84.
      setLocation(pos.coords.longitude, pos.coords.latitude, "wgs84", "gps");
      showPoint(pos.coords.latitude, pos.coords.longitude, pos.coords.accuracy);
      map.setView([pos.coords.latitude, pos.coords.longitude], Math.max(map.getZoom(), 15));
    }, function (err) {
      btn.disabled = false;
      btn.textContent = "Use my location 使用定位";
      showFormError("Could not read the location (" + err.message + "); tap the map or type the numbers. 定位失败。");
    }, { enableHighAccuracy: true, timeout: 20000, maximumAge: 30000 });
  });

  function typed() {
    var lon = parseFloat($("lon").value), lat = parseFloat($("lat").value);
    if (isFinite(lon) && isFinite(lat)) {
      state.lon = lon; state.lat = lat; state.crs = $("crs").value; state.source = "typed";
      if (state.crs === CFG.map_crs) showPoint(lat, lon);
    } else {
      state.lon = null; state.lat = null;
    }
    showDeclared();
  }
  $("lon").addEventListener("input", typed);
  $("lat").addEventListener("input", typed);
  $("crs").addEventListener("change", function () {
    state.crs = $("crs").value;
    if (state.source !== "typed" && state.lon !== null) state.source = "typed";
    showDeclared();
  });

  /* ------------------------------------------------------------ photos */

  var picked = [];  // File objects chosen for the report being made

  function addFiles(list) {
    showFormError("");
    Array.prototype.forEach.call(list || [], function (f) {
      if (picked.length >= MEDIA.max_count) {
        showFormError("最多 " + MEDIA.max_count + " 张照片 · at most " + MEDIA.max_count + " photos.");
        return;
      }
      if (f.size > MEDIA.max_bytes) {
        showFormError("照片过大 Photo too large: " + (f.name || "") + " (" + (f.size / 1048576).toFixed(1) + " MB > " + (MEDIA.max_bytes / 1048576).toFixed(1) + " MB)");
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
      rm.setAttribute("aria-label", "remove photo 删除照片");
      rm.addEventListener("click", function () { picked.splice(i, 1); renderPicked(); });
      li.appendChild(rm);
      li.appendChild(text("small", (f.size / 1048576).toFixed(1) + " MB"));
      ul.appendChild(li);
    });
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

  form.addEventListener("submit", function (ev) {
    ev.preventDefault();
    showFormError("");
    var category = $("category").value;
    if (!category) { showFormError("Choose what happened. 请选择事件类别。"); $("category").focus(); return; }
    if (state.lon === null) { showFormError("Give the location: use GPS, tap the map or type it. 请提供位置。"); return; }
    var severity = (form.querySelector("input[name=severity]:checked") || {}).value;
    var item = {
      key: uuid(),
      made_at: new Date().toISOString(),
      attempts: 0,
      last_error: null,
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
      $("description").value = "";
      picked = [];
      renderPicked();
      render();
      flush();
    }, function (err) {
      showFormError("照片无法保存在手机上 The photos could not be kept on this phone (" + (err && err.message) + "); remove them or try again.");
    }).then(function () { $("send").disabled = false; });
  });

  /* ------------------------------------------------------------ sending the queue */

  var flushing = false;

  function headers(key, json) {
    var h = { "Idempotency-Key": key, Accept: "application/json" };
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
        var e = new Error("照片在手机上丢失 the photos are missing on this phone");
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
          return true;
        }
        if (r.status >= 400 && r.status < 500 && !KEEP_QUEUED[r.status]) {
          remove(item.key);
          remember({ key: item.key, ok: false, status: r.status, made_at: item.made_at, error: body, body: item.body });
          return true;
        }
        update(item.key, function (q) {
          q.sending = false;
          q.last_error = (body && body.message) || ("the server answered " + r.status);
          q.last_status = r.status;
        });
        return false;
      });
    }, function (err) {
      var why = err && err.photos ? err.message : "no network 无网络";
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

  window.addEventListener("online", function () { showNet(); flush(); });
  window.addEventListener("offline", showNet);
  document.addEventListener("visibilitychange", function () { if (!document.hidden) flush(); });
  window.addEventListener("storage", function (e) { if (e.key === QUEUE || e.key === SENT) render(); });
  setInterval(function () { if (load(QUEUE).length) flush(); }, RETRY_MS);

  /* ------------------------------------------------------------ showing it */

  function showNet() {
    var el = $("net");
    el.textContent = navigator.onLine ? "online 在线" : "offline 离线 — reports wait on the phone";
    el.className = navigator.onLine ? "net" : "net off";
  }

  function plainError(entry) {
    var e = entry.error || {};
    var lines = [e.message || ("The server refused the report (HTTP " + entry.status + ").")];
    var d = e.detail;
    if (d && typeof d === "object" && !Array.isArray(d)) {
      if (d.hint) lines.push(d.hint);
      if (d.distance_m !== undefined) lines.push("Distance to the nearest side: " + Math.round(d.distance_m) + " m.");
      if (d.fix) lines.push(d.fix);
    }
    if (Array.isArray(d)) {
      d.forEach(function (p) { if (p && p.field) lines.push(p.field + ": " + p.problem); });
    }
    return lines.join(" ");
  }

  function render() {
    var queue = load(QUEUE);
    var ul = $("queue");
    ul.textContent = "";
    queue.forEach(function (q) {
      var li = document.createElement("li");
      li.className = "queued";
      li.setAttribute("data-key", q.key);
      li.appendChild(text("b", CFG.categories[q.body.category] || q.body.category));
      li.appendChild(text("span", " made " + localTime(q.made_at) + (q.photos ? " · " + q.photos + " 张照片 photo(s)" : "")));
      var st = q.sending ? "sending… 发送中" : q.last_error ? "waiting: " + q.last_error : (navigator.onLine ? "queued 排队中" : "waiting for the network 等待网络");
      li.appendChild(text("small", st + (q.attempts ? " · tries " + q.attempts : "") + " · key " + q.key.slice(0, 8)));
      ul.appendChild(li);
    });
    $("queue-card").hidden = queue.length === 0;

    var sent = load(SENT);
    var rl = $("results");
    rl.textContent = "";
    sent.forEach(function (s) {
      var li = document.createElement("li");
      li.setAttribute("data-key", s.key);
      if (s.ok && s.case) {
        var c = s.case;
        li.className = "ok";
        var lead = (c.teams || []).filter(function (t) { return t.lead; })[0];
        li.appendChild(text("b", c.code, "code"));
        var dl = document.createElement("dl");
        var add = function (k, v, cls) { dl.appendChild(text("dt", k)); dl.appendChild(text("dd", v, cls)); };
        add("Category 类别", CFG.categories[c.category] || c.category);
        add("Mechanism 机制", c.mechanism ? (CFG.mechanisms[c.mechanism] || c.mechanism) : "single-side case 单方事件 (" + c.side + ")", "mechanism");
        add("Lead team 牵头队伍", lead ? lead.name + " (" + lead.code + ")" : "the grid and police grid of " + c.side, "lead-team");
        add("Due 时限", localTime(c.due_at), "due");
        add("Sides 涉及", (c.sides || []).join(", ") + (c.cross_boundary ? " · cross-boundary 跨界" : ""));
        if (s.photos) add("Photos 照片", s.photos + " 张 sent", "photos");
        li.appendChild(dl);
        var a = document.createElement("a");
        var p = c.location && c.location.coordinates;
        a.href = "/map?status=all" + (p ? "#17/" + p[1].toFixed(5) + "/" + p[0].toFixed(5) : "");
        a.textContent = "see it on the map 在地图上查看";
        li.appendChild(a);
      } else {
        li.className = "rejected";
        li.appendChild(text("b", "Not accepted 未受理: " + (CFG.categories[s.body.category] || s.body.category)));
        li.appendChild(text("p", plainError(s), "error"));
      }
      rl.appendChild(li);
    });
    $("results-card").hidden = sent.length === 0;
  }

  showNet();
  render();
  dropOrphans().then(flush);
})();
