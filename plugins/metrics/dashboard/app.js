// codexdns dashboard, System view (owner.js has the Overview, Devices and Query log views): plain JavaScript, no build step. History from /api/dashboard, then one sample per
// interval over server-sent events (/api/stream); falls back to polling /api/dashboard when EventSource is not
// available. Charts are uPlot, served by the metrics plugin itself (no CDN: the box may be offline).
'use strict';
(function () {
  var MAX_POINTS = 300;
  var COLORS = ['#2f7ed8', '#e4572e', '#29a36a', '#9b5de5', '#f2a541', '#17a2b8'];
  var charts = {};
  var intervalMs = 1000;

  function $(id) {
    return document.getElementById(id);
  }

  function fmt(n, digits) {
    if (n === null || n === undefined || !isFinite(n)) return '–';
    if (Math.abs(n) >= 1000) return Math.round(n).toLocaleString();
    return n.toFixed(digits === undefined ? 1 : digits);
  }

  // ------------------------------------------------------------------------------------------ charts

  // One definition per chart: its series and how to read each from a sample (null: no value at that time).
  var DEFS = {
    qps: {
      series: [
        { label: 'queries/s', get: function (s) { return s.qps; } },
        { label: 'cache hit %', scale: '%', get: function (s) { return s.cacheHitRatio === null ? null : s.cacheHitRatio * 100; } },
      ],
      enabled: function () { return true; },
      axes2: true,
    },
    queue: {
      series: [
        { label: 'high', get: function (s) { return s.queue ? s.queue.high : null; } },
        { label: 'low', get: function (s) { return s.queue ? s.queue.low : null; } },
      ],
      enabled: function (s) { return s.queue !== null; },
    },
    rate: {
      series: [{ label: 'jobs/s', get: function (s) { return s.processingRate; } }],
      enabled: function (s) { return s.processingRate !== null; },
    },
    discovery: {
      series: [
        { label: 'avg ms', get: function (s) { return s.discovery ? s.discovery.avgMs : null; } },
        { label: 'max ms', get: function (s) { return s.discovery ? s.discovery.maxMs : null; } },
      ],
      enabled: function (s) { return s.discovery !== null; },
      points: true,
    },
    tasks: {
      series: [
        { label: 'tracking', get: function (s) { return s.tasks.tracking; } },
        { label: 'discovery', get: function (s) { return s.tasks.discovery; } },
        { label: 'forwards', get: function (s) { return s.tasks.forwards; } },
        { label: 'TCP conns', get: function (s) { return s.tasks.tcp; } },
        { label: 'queries', get: function (s) { return s.tasks.queries; } },
      ],
      enabled: function () { return true; },
    },
  };

  function chartWidth(el) {
    return Math.max(240, el.clientWidth || el.parentNode.clientWidth - 24);
  }

  function makeChart(name) {
    var def = DEFS[name];
    var el = $('chart-' + name);
    var data = [[]];
    var series = [{}];
    def.series.forEach(function (s, i) {
      data.push([]);
      series.push({
        label: s.label,
        scale: s.scale || 'y',
        stroke: COLORS[i % COLORS.length],
        width: 2,
        spanGaps: false,
        points: { show: def.points ? true : false, size: 5 },
        value: function (u, v) { return v === null || v === undefined ? '–' : fmt(v); },
      });
    });
    var axes = [
      { space: 70, values: function (u, vals) { return vals.map(function (v) { return new Date(v * 1000).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit' }); }); } },
      { scale: 'y', size: 50 },
    ];
    var scales = { x: { time: true }, y: { range: function (u, min, max) { return [0, Math.max(1, max === null ? 1 : max * 1.1)]; } } };
    if (def.axes2) {
      axes.push({ scale: '%', side: 1, size: 50, grid: { show: false }, values: function (u, vals) { return vals.map(function (v) { return v + '%'; }); } });
      scales['%'] = { range: [0, 100] };
    }
    var opts = { width: chartWidth(el), height: 180, series: series, axes: axes, scales: scales, legend: { live: false }, cursor: { drag: { x: false, y: false } } };
    var plot = new uPlot(opts, data, el);
    charts[name] = { def: def, el: el, data: data, plot: plot, points: 0 };
  }

  function panelOff(name, off, text) {
    var panel = $('panel-' + name);
    var p = panel.querySelector('.off');
    if (text) p.textContent = text;
    p.hidden = !off;
    panel.classList.toggle('disabled', off);
    var c = $('chart-' + name);
    if (c) c.setAttribute('data-enabled', off ? 'false' : 'true');
  }

  function addSample(s, redraw) {
    Object.keys(charts).forEach(function (name) {
      var c = charts[name];
      var t = s.t / 1000;
      c.data[0].push(t);
      var any = false;
      c.def.series.forEach(function (sd, i) {
        var v = sd.get(s);
        if (v !== null && v !== undefined) any = true;
        c.data[i + 1].push(v === undefined ? null : v);
      });
      if (any) c.points++;
      if (c.data[0].length > MAX_POINTS) c.data.forEach(function (a) { a.shift(); });
      c.el.setAttribute('data-points', String(c.points));
      panelOff(name, !c.def.enabled(s));
      if (redraw) c.plot.setData(c.data);
    });
    renderBreaker(s.breaker);
    $('kpi-qps').textContent = fmt(s.qps);
    // An idle second has no ratio of its own: the header keeps the last one seen rather than blanking.
    if (s.cacheHitRatio !== null) $('kpi-hit').textContent = fmt(s.cacheHitRatio * 100) + '%';
    $('updated').textContent = 'updated ' + new Date(s.t).toLocaleTimeString();
  }

  // ------------------------------------------------------------------------------------------ breaker

  var RANK = { closed: 0, 'half-open': 1, open: 2 };

  function renderBreaker(b) {
    var el = $('breaker');
    if (b === null || b === undefined) {
      el.setAttribute('data-state', 'none');
      el.textContent = '';
      panelOff('breaker', true);
      return;
    }
    panelOff('breaker', false);
    var names = Object.keys(b).sort();
    var worst = 'closed';
    names.forEach(function (n) { if (RANK[b[n]] > RANK[worst]) worst = b[n]; });
    if (el.getAttribute('data-state') === worst && el.childNodes.length === names.length && names.length > 0) {
      names.forEach(function (n, i) {
        var badge = el.childNodes[i];
        if (badge.getAttribute('data-state') !== b[n]) badge.setAttribute('data-state', b[n]);
      });
    } else {
      el.textContent = '';
      if (names.length === 0) {
        var none = document.createElement('span');
        none.className = 'muted';
        none.textContent = 'no breaker has reported yet';
        el.appendChild(none);
      }
      names.forEach(function (n) {
        var badge = document.createElement('span');
        badge.className = 'badge';
        badge.setAttribute('data-method', n);
        badge.setAttribute('data-state', b[n]);
        var dot = document.createElement('i');
        var label = document.createElement('span');
        label.textContent = n + ': ' + b[n];
        badge.appendChild(dot);
        badge.appendChild(label);
        el.appendChild(badge);
      });
    }
    names.forEach(function (n, i) {
      var label = el.childNodes[i] && el.childNodes[i].lastChild;
      if (label) label.textContent = n + ': ' + b[n];
    });
    el.setAttribute('data-state', names.length === 0 ? 'closed' : worst);
  }

  // ------------------------------------------------------------------------------------------ clients

  function renderClients(c) {
    var table = $('clients');
    var body = table.querySelector('tbody');
    var panel = $('panel-clients');
    if (!c || !c.enabled) {
      panelOff('clients', true);
      table.hidden = true;
      return;
    }
    panelOff('clients', false, c.error ? 'Storage unavailable: ' + c.error : 'Client tracking is not enabled.');
    if (c.error) panel.querySelector('.off').hidden = false;
    table.hidden = false;
    body.textContent = '';
    c.clients.forEach(function (row) {
      var tr = document.createElement('tr');
      var name = document.createElement('td');
      var strong = document.createElement('span');
      strong.className = 'name';
      strong.textContent = row.hostname || row.ip;
      name.appendChild(strong);
      if (row.hostname) {
        var ip = document.createElement('span');
        ip.className = 'muted';
        ip.textContent = ' ' + row.ip;
        name.appendChild(ip);
      } else if (row.discovering) {
        var d = document.createElement('span');
        d.className = 'muted';
        d.textContent = ' (discovering…)';
        name.appendChild(d);
      }
      var q = document.createElement('td');
      q.className = 'num';
      q.textContent = row.queryCount.toLocaleString();
      var seen = document.createElement('td');
      seen.textContent = new Date(row.lastSeen).toLocaleTimeString();
      tr.appendChild(name);
      tr.appendChild(q);
      tr.appendChild(seen);
      body.appendChild(tr);
    });
    table.setAttribute('data-rows', String(c.clients.length));
    $('kpi-clients').textContent = c.total === null || c.total === undefined ? '–' : c.total.toLocaleString();
  }

  // ------------------------------------------------------------------------------------------ status

  function health() {
    fetch('/health', { credentials: 'same-origin', cache: 'no-store' })
      .then(function (r) { return r.json(); })
      .then(function (h) {
        var el = $('status');
        el.setAttribute('data-status', h.status);
        var bad = Object.keys(h.parts).filter(function (k) { var s = h.parts[k].state; return s === 'down' || s === 'degraded'; });
        el.textContent = h.status + (bad.length ? ' (' + bad.join(', ') + ')' : '');
        el.title = JSON.stringify(h.parts, null, 1);
      })
      .catch(function () {
        $('status').setAttribute('data-status', 'unknown');
        $('status').textContent = 'unreachable';
      });
  }

  // ------------------------------------------------------------------------------------------ wiring

  function redrawAll() {
    Object.keys(charts).forEach(function (n) { charts[n].plot.setData(charts[n].data); });
  }

  function resizeAll() {
    Object.keys(charts).forEach(function (n) {
      var c = charts[n];
      var w = chartWidth(c.el);
      if (Math.abs(c.plot.width - w) > 2) c.plot.setSize({ width: w, height: 180 });
    });
  }

  function connect() {
    if (!window.EventSource) return poll();
    var es = new EventSource('/api/stream');
    es.addEventListener('sample', function (e) { addSample(JSON.parse(e.data), true); });
    es.addEventListener('clients', function (e) { renderClients(JSON.parse(e.data)); });
    es.onerror = function () {
      $('status').setAttribute('data-status', 'unknown');
      $('status').textContent = 'reconnecting…';
    };
  }

  function poll() {
    var last = 0;
    setInterval(function () {
      fetch('/api/dashboard', { credentials: 'same-origin', cache: 'no-store' })
        .then(function (r) { return r.json(); })
        .then(function (d) {
          d.samples.forEach(function (s) { if (s.t > last) { addSample(s, false); last = s.t; } });
          redrawAll();
          renderClients(d.clients);
        });
    }, Math.min(2000, intervalMs));
  }

  function start() {
    fetch('/api/dashboard', { credentials: 'same-origin', cache: 'no-store' })
      .then(function (r) {
        if (r.status === 401) {
          location.href = '/login';
          throw new Error('login');
        }
        return r.json();
      })
      .then(function (d) {
        intervalMs = d.intervalMs;
        $('logout').hidden = !d.auth;
        Object.keys(DEFS).forEach(makeChart);
        d.samples.forEach(function (s) { addSample(s, false); });
        redrawAll();
        renderClients(d.clients);
        if (d.samples.length === 0) renderBreaker(undefined);
        connect();
        health();
        setInterval(health, 5000);
        if (window.ResizeObserver) new ResizeObserver(resizeAll).observe(document.getElementById('view-system'));
        else window.addEventListener('resize', resizeAll);
        // The System view is hidden until chosen: size the charts when it shows.
        window.addEventListener('codexdns:view', resizeAll);
      })
      .catch(function (err) {
        if (err && err.message === 'login') return;
        $('status').textContent = 'cannot load: ' + err;
      });
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
  else start();
})();
