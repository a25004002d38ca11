// codexdns dashboard for the owner of the network: Overview, Devices (and a page per device), Query log. Plain
// JavaScript, no build step, no inline script (the page's CSP is script-src 'self'). The views read the JSON API:
// /api/querylog/summary, /api/top/*, /api/upstreams, /api/clients, /api/clients/{ip}[/activity], /api/queries,
// and /api/filter when the filter plugin is there. The System view (the server's internals) is app.js.
'use strict';
(function () {
  var COLORS = { queries: '#2f7ed8', blocked: '#e4572e', cached: '#29a36a' };
  var features = { querylog: false, filter: false, clienttrack: false };
  var state = { view: '', range: '24h', devices: { offset: 0, limit: 50, sort: 'last_seen', order: 'desc', search: '' }, log: { cursor: null, stack: [] }, names: {} };
  var charts = {};
  var timers = {};

  function $(id) {
    return document.getElementById(id);
  }

  function api(path, opts) {
    return fetch(path, Object.assign({ credentials: 'same-origin', cache: 'no-store' }, opts || {})).then(function (r) {
      if (r.status === 401) {
        location.href = '/login';
        throw new Error('login');
      }
      if (!r.ok) {
        var e = new Error(path + ': ' + r.status);
        e.status = r.status;
        throw e;
      }
      return r.json();
    });
  }

  function num(n) {
    return n === null || n === undefined ? '–' : Number(n).toLocaleString();
  }

  function pct(x) {
    return x === null || x === undefined ? '–' : (x * 100).toFixed(1) + '%';
  }

  function when(iso) {
    if (!iso) return '–';
    var d = new Date(iso);
    var today = new Date();
    var sameDay = d.toDateString() === today.toDateString();
    // Always with the day: "last seen 10:02" alone reads as today even when it was last week.
    return (sameDay ? 'today' : d.toLocaleDateString()) + ' ' + d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: sameDay ? '2-digit' : undefined });
  }

  /** The log's time column: the time alone today (every row would say "today"), the date otherwise. */
  function clock(iso) {
    var d = new Date(iso);
    return d.toDateString() === new Date().toDateString() ? d.toLocaleTimeString() : when(iso);
  }

  function el(tag, text, cls) {
    var e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = String(text);
    if (cls) e.className = cls;
    return e;
  }

  function link(text, href, cls) {
    var a = el('a', text, cls);
    a.href = href;
    return a;
  }

  function td(content, cls) {
    var c = el('td', null, cls);
    if (content instanceof Node) c.appendChild(content);
    else c.textContent = content === null || content === undefined ? '' : String(content);
    return c;
  }

  function fill(table, rows, build) {
    var body = table.querySelector('tbody');
    body.textContent = '';
    rows.forEach(function (r) {
      body.appendChild(build(r));
    });
    table.setAttribute('data-rows', String(rows.length));
    if (rows.length === 0) {
      var tr = el('tr', null, 'empty');
      var c = el('td', 'nothing yet', 'muted');
      c.colSpan = table.querySelectorAll('thead th').length;
      tr.appendChild(c);
      body.appendChild(tr);
    }
  }

  function deviceName(ip) {
    return state.names[ip] || ip;
  }

  function deviceLink(ip) {
    return link(deviceName(ip), '#/device/' + encodeURIComponent(ip), 'name');
  }

  function logHref(params) {
    var q = new URLSearchParams(params).toString();
    return '#/log' + (q ? '?' + q : '');
  }

  // Names of devices (hostname, or the DNS name clientnames gives them) for the tables that show addresses.
  function refreshNames() {
    if (!features.clienttrack) return Promise.resolve();
    return api('/api/clients?limit=1000&sort=last_seen&order=desc')
      .then(function (d) {
        (d.clients || []).forEach(function (c) {
          var n = c.dnsName || c.hostname;
          if (n) state.names[c.ip] = n;
        });
      })
      .catch(function () {});
  }

  // ------------------------------------------------------------------------------------------ charts

  function chart(id, series) {
    var target = $(id);
    var w = Math.max(260, (target.clientWidth || target.parentNode.clientWidth || 600) - 4);
    var opts = {
      width: w,
      height: 200,
      series: [{}].concat(
        series.map(function (s) {
          return { label: s, stroke: COLORS[s], fill: COLORS[s] + '22', width: 2, points: { show: false } };
        }),
      ),
      axes: [{ space: 60 }, { size: 50 }],
      scales: { x: { time: true }, y: { range: function (u, min, max) { return [0, Math.max(1, (max || 1) * 1.1)]; } } },
      legend: { live: false },
      cursor: { drag: { x: false, y: false } },
    };
    if (charts[id]) charts[id].destroy();
    var data = [[]].concat(series.map(function () { return []; }));
    charts[id] = new uPlot(opts, data, target);
    return charts[id];
  }

  function setSeries(id, names, points) {
    var c = charts[id] || chart(id, names);
    var data = [points.map(function (p) { return p.t / 1000; })];
    names.forEach(function (n) {
      data.push(points.map(function (p) { return p[n]; }));
    });
    c.setData(data);
    $(id).setAttribute('data-points', String(points.length));
  }

  function resizeCharts() {
    Object.keys(charts).forEach(function (id) {
      var t = $(id);
      var w = Math.max(260, t.clientWidth - 4);
      if (t.clientWidth > 0 && Math.abs(charts[id].width - w) > 2) charts[id].setSize({ width: w, height: 200 });
    });
  }

  // ------------------------------------------------------------------------------------------ overview

  function hourly(points, hours) {
    // Hours without queries are missing from the API's answer: fill them with zeros for the chart.
    var byT = {};
    points.forEach(function (p) { byT[p.t] = p; });
    var now = Math.floor(Date.now() / 3600000) * 3600000;
    var out = [];
    for (var t = now - (hours - 1) * 3600000; t <= now; t += 3600000) out.push(byT[t] || { t: t, queries: 0, blocked: 0, cached: 0 });
    return out;
  }

  function overview() {
    var range = state.range;
    upstreams();
    filterPanel();
    $('ov-off').hidden = features.querylog;
    if (!features.querylog) return;
    api('/api/querylog/summary?range=' + range)
      .then(function (s) {
        $('ov-off').hidden = true;
        $('ov-queries').textContent = num(s.today.queries);
        $('ov-blocked').textContent = num(s.today.blocked);
        $('ov-blocked-share').textContent = s.today.blockedShare === null ? '' : pct(s.today.blockedShare);
        $('ov-cache').textContent = pct(s.today.cacheShare);
        $('ov-devices').textContent = num(s.activeClients);
        var pts = range === '1h' ? s.series : hourly(s.series, range === '24h' ? 24 : 168);
        setSeries('chart-activity', ['queries', 'blocked', 'cached'], pts);
      })
      .catch(function (e) {
        if (e.status === 404) $('ov-off').hidden = false;
      });
    api('/api/top/domains?limit=10&range=' + range)
      .then(function (d) {
        fill($('top-domains'), d.domains, function (r) {
          var tr = el('tr');
          tr.appendChild(td(link(r.name, logHref({ name: r.name }), 'name')));
          tr.appendChild(td(num(r.queries), 'num'));
          return tr;
        });
      })
      .catch(function () {});
    api('/api/top/domains?blocked=1&limit=10&range=' + range)
      .then(function (d) {
        fill($('top-blocked'), d.domains, function (r) {
          var tr = el('tr');
          tr.appendChild(td(link(r.name, logHref({ name: r.name, blocked: '1' }), 'name')));
          tr.appendChild(td(num(r.blocked), 'num'));
          return tr;
        });
      })
      .catch(function () {});
    api('/api/top/clients?limit=10&range=' + range)
      .then(function (d) {
        fill($('top-devices'), d.clients, function (r) {
          var tr = el('tr');
          tr.appendChild(td(deviceLink(r.ip)));
          tr.appendChild(td(num(r.queries), 'num'));
          tr.appendChild(td(num(r.blocked), 'num'));
          return tr;
        });
      })
      .catch(function () {});
  }

  function upstreams() {
    api('/api/upstreams')
      .then(function (d) {
        var panel = $('panel-upstreams');
        panel.querySelector('.off').hidden = d.enabled;
        var up = d.upstreams.filter(function (u) { return u.up !== false; }).length;
        $('ov-upstreams').textContent = d.enabled ? up + ' / ' + d.upstreams.length + ' up' : '–';
        var answers = 0;
        var sum = 0;
        d.upstreams.forEach(function (u) {
          if (u.avgMs !== null) {
            answers += u.answers;
            sum += u.avgMs * u.answers;
          }
        });
        $('ov-upstream-ms').textContent = answers > 0 ? (sum / answers).toFixed(1) + ' ms' : '';
        fill($('upstreams'), d.upstreams, function (u) {
          var tr = el('tr');
          tr.appendChild(td(u.to, 'name'));
          var st = el('span', u.up === false ? 'down' : 'up', 'state');
          st.setAttribute('data-state', u.up === false ? 'down' : 'up');
          tr.appendChild(td(st));
          tr.appendChild(td(u.avgMs === null ? '–' : u.avgMs.toFixed(1), 'num'));
          tr.appendChild(td(num(u.failedTries), 'num'));
          return tr;
        });
      })
      .catch(function () {});
  }

  // The filter plugin's panel: shown only when /api/filter answers.
  function filterPanel() {
    if (!features.filter) {
      $('panel-filter').hidden = true;
      return;
    }
    api('/api/filter')
      .then(function (f) {
        var panel = $('panel-filter');
        panel.hidden = false;
        var pausedUntil = f.paused && f.paused.all;
        var st = $('filter-state');
        st.textContent = !f.enabled ? 'off' : pausedUntil ? 'paused until ' + new Date(pausedUntil).toLocaleTimeString() : 'on';
        st.setAttribute('data-status', !f.enabled || pausedUntil ? 'degraded' : 'ok');
        $('filter-summary').textContent = num(f.blocked) + ' of ' + num(f.queries) + ' queries blocked' + (f.groups && f.groups.length ? ' · groups: ' + f.groups.map(function (g) { return g.name + (g.paused ? ' (paused)' : ''); }).join(', ') : '');
        $('filter-resume').hidden = !pausedUntil;
        $('filter-pause').hidden = !!pausedUntil;
        $('filter-pause-60').hidden = !!pausedUntil;
        fill($('filter-sources'), f.sources || [], function (s) {
          var tr = el('tr');
          tr.appendChild(td(s.source, 'name'));
          tr.appendChild(td(num(s.names), 'num'));
          tr.appendChild(td(s.lastRefresh ? when(s.lastRefresh) : '–'));
          var ok = el('span', s.ok ? 'ok' : s.error || 'failed', 'state');
          ok.setAttribute('data-state', s.ok ? 'up' : 'down');
          tr.appendChild(td(ok));
          return tr;
        });
      })
      .catch(function () {
        $('panel-filter').hidden = true;
      });
  }

  function filterAction(path, body) {
    api(path, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) })
      .then(filterPanel)
      .catch(function () {});
  }

  // ------------------------------------------------------------------------------------------ devices

  function devices() {
    var d = state.devices;
    var q = new URLSearchParams({ offset: String(d.offset), limit: String(d.limit), sort: d.sort, order: d.order });
    if (d.search) q.set('search', d.search);
    var table = $('devices');
    table.querySelectorAll('th[data-sort]').forEach(function (th) {
      th.setAttribute('aria-sort', th.getAttribute('data-sort') === d.sort ? (d.order === 'asc' ? 'ascending' : 'descending') : 'none');
    });
    api('/api/clients?' + q.toString())
      .then(function (r) {
        var panel = table.closest('.panel');
        panel.querySelector('.off').hidden = r.enabled !== false;
        $('dev-total').textContent = r.total + (r.total === 1 ? ' device' : ' devices');
        $('dev-prev').disabled = d.offset === 0;
        $('dev-next').disabled = d.offset + d.limit >= r.total;
        fill(table, r.clients, function (c) {
          var n = c.dnsName || c.hostname;
          if (n) state.names[c.ip] = n;
          var tr = el('tr');
          tr.setAttribute('data-ip', c.ip);
          var name = link(n || (c.discovering ? 'identifying…' : 'unknown'), '#/device/' + encodeURIComponent(c.ip), 'name');
          tr.appendChild(td(name));
          tr.appendChild(td(c.ip));
          tr.appendChild(td(c.mac || '–', 'wide-only mono'));
          tr.appendChild(td(c.vendor || '–', 'wide-only'));
          tr.appendChild(td(c.method || (c.dnsName ? 'dns name' : '–'), 'wide-only'));
          tr.appendChild(td(when(c.firstSeen), 'wide-only'));
          tr.appendChild(td(when(c.lastSeen)));
          tr.appendChild(td(c.queriesToday === undefined ? '–' : num(c.queriesToday), 'num'));
          tr.appendChild(td(num(c.queryCount), 'num'));
          return tr;
        });
      })
      .catch(function (e) {
        if (e.message !== 'login') table.closest('.panel').querySelector('.off').hidden = false;
      });
  }

  function device(ip) {
    $('dev-title').textContent = deviceName(ip);
    $('dev-log-link').href = logHref({ client: ip });
    var details = $('dev-details');
    (features.clienttrack ? api('/api/clients/' + encodeURIComponent(ip)) : Promise.reject(new Error('no tracking')))
      .then(function (c) {
        details.textContent = '';
        var rows = [
          ['Name', c.hostname || '–'],
          ['DNS name', c.dnsName],
          ['IP', c.ip],
          ['MAC', c.mac || '–'],
          ['Vendor', c.vendor || '–'],
          ['Identified by', c.method || (c.discovering ? 'identifying…' : '–')],
          ['First seen', when(c.firstSeen)],
          ['Last seen', when(c.lastSeen)],
          ['Queries today', c.queriesToday === undefined ? '–' : num(c.queriesToday)],
          ['Queries in all', num(c.queryCount)],
        ];
        rows.forEach(function (r) {
          if (r[1] === undefined || r[1] === null) return;
          details.appendChild(el('dt', r[0]));
          details.appendChild(el('dd', r[1]));
        });
        if (c.hostname || c.dnsName) $('dev-title').textContent = (c.dnsName || c.hostname) + ' (' + c.ip + ')';
      })
      .catch(function () {
        details.textContent = '';
        details.appendChild(el('dt', 'IP'));
        details.appendChild(el('dd', ip));
      });
    if (!features.querylog) return;
    api('/api/clients/' + encodeURIComponent(ip) + '/activity?range=7d')
      .then(function (a) {
        setSeries('chart-device', ['queries', 'blocked'], hourly(a.series, 168));
        fill($('dev-domains'), a.topDomains, function (r) {
          var tr = el('tr');
          tr.appendChild(td(link(r.name, logHref({ client: ip, name: r.name }), 'name')));
          tr.appendChild(td(num(r.queries), 'num'));
          tr.appendChild(td(num(r.blocked), 'num'));
          return tr;
        });
        fill($('dev-blocked'), a.blocked, function (q) {
          var tr = el('tr');
          tr.appendChild(td(clock(q.time)));
          tr.appendChild(td(q.name, 'name'));
          tr.appendChild(td(q.type));
          return tr;
        });
        fill($('dev-recent'), a.recent, function (q) {
          var tr = el('tr');
          tr.appendChild(td(clock(q.time)));
          tr.appendChild(td(q.name, 'name'));
          tr.appendChild(td(q.type));
          tr.appendChild(td(answer(q)));
          tr.appendChild(td(q.answeredBy));
          tr.appendChild(td(q.durationMs.toFixed(1), 'num'));
          return tr;
        });
      })
      .catch(function () {});
  }

  function answer(q) {
    var s = el('span', q.blocked ? 'blocked' : q.rcode, 'rcode');
    s.setAttribute('data-rcode', q.blocked ? 'BLOCKED' : q.rcode);
    if (q.truncated) s.textContent += ' (TC)';
    return s;
  }

  // ------------------------------------------------------------------------------------------ query log

  function logFilters() {
    var form = $('log-filters');
    var q = new URLSearchParams();
    ['client', 'name', 'qtype', 'rcode', 'answered_by'].forEach(function (k) {
      var v = form.elements[k].value.trim();
      if (v) q.set(k, v);
    });
    if (form.elements.blocked.checked) q.set('blocked', '1');
    var to = form.elements.to.value;
    if (to) q.set('to', new Date(to).toISOString());
    return q;
  }

  function setLogFilters(params) {
    var form = $('log-filters');
    ['client', 'name', 'qtype', 'rcode', 'answered_by'].forEach(function (k) {
      form.elements[k].value = params.get(k) || '';
    });
    form.elements.blocked.checked = params.get('blocked') === '1';
    var to = params.get('to');
    form.elements.to.value = to ? toLocalInput(new Date(to)) : '';
  }

  function toLocalInput(d) {
    var pad = function (n) { return String(n).padStart(2, '0'); };
    return d.getFullYear() + '-' + pad(d.getMonth() + 1) + '-' + pad(d.getDate()) + 'T' + pad(d.getHours()) + ':' + pad(d.getMinutes());
  }

  function loadLog() {
    $('log').closest('.panel').querySelector('.off').hidden = features.querylog;
    if (!features.querylog) return Promise.resolve();
    var q = logFilters();
    q.set('limit', '50');
    var cursor = state.log.stack.length > 0 ? state.log.stack[state.log.stack.length - 1] : null;
    if (cursor !== null) q.set('cursor', String(cursor));
    var table = $('log');
    return api('/api/queries?' + q.toString())
      .then(function (r) {
        table.closest('.panel').querySelector('.off').hidden = true;
        state.log.cursor = r.cursor;
        $('log-older').disabled = r.cursor === null;
        $('log-newest').disabled = state.log.stack.length === 0;
        $('log-page').textContent = state.log.stack.length === 0 ? 'newest' : 'page ' + (state.log.stack.length + 1) + (r.partial ? ' (search goes on: Older)' : '');
        table.setAttribute('data-page', String(state.log.stack.length + 1));
        fill(table, r.queries, function (x) {
          var tr = el('tr');
          if (x.pending) tr.className = 'pending';
          tr.appendChild(td(clock(x.time)));
          tr.appendChild(td(link(deviceName(x.client), logHref({ client: x.client }), 'client')));
          tr.appendChild(td(link(x.name, logHref({ name: x.name }), 'name')));
          tr.appendChild(td(x.type));
          tr.appendChild(td(answer(x)));
          tr.appendChild(td(x.answeredBy + (x.cached ? '' : ''), 'wide-only'));
          tr.appendChild(td(x.durationMs.toFixed(1), 'num'));
          return tr;
        });
      })
      .catch(function (e) {
        if (e.status === 404) table.closest('.panel').querySelector('.off').hidden = false;
      });
  }

  // ------------------------------------------------------------------------------------------ routing

  function route() {
    var hash = location.hash || '#/';
    var path = hash.slice(1);
    var qi = path.indexOf('?');
    var params = new URLSearchParams(qi >= 0 ? path.slice(qi + 1) : '');
    if (qi >= 0) path = path.slice(0, qi);
    var view = 'overview';
    var ip = null;
    if (path === '/devices') view = 'devices';
    else if (path.indexOf('/device/') === 0) {
      view = 'device';
      ip = decodeURIComponent(path.slice('/device/'.length));
    } else if (path === '/log') view = 'log';
    else if (path === '/system') view = 'system';
    state.view = view;
    document.querySelectorAll('main.view').forEach(function (m) {
      m.hidden = m.id !== 'view-' + view;
    });
    document.querySelectorAll('#nav a').forEach(function (a) {
      var v = a.getAttribute('data-view');
      if (v === view || (view === 'device' && v === 'devices')) a.setAttribute('aria-current', 'page');
      else a.removeAttribute('aria-current');
    });
    document.body.setAttribute('data-view', view);
    Object.keys(timers).forEach(function (k) {
      clearInterval(timers[k]);
      delete timers[k];
    });
    if (view === 'overview') {
      overview();
      timers.overview = setInterval(overview, 10000);
    } else if (view === 'devices') devices();
    else if (view === 'device') device(ip);
    else if (view === 'log') {
      setLogFilters(params);
      state.log.stack = [];
      loadLog();
      timers.log = setInterval(function () {
        if ($('log-live').checked && state.log.stack.length === 0 && document.visibilityState !== 'hidden') loadLog();
      }, 2000);
    }
    window.dispatchEvent(new Event('codexdns:view'));
    setTimeout(resizeCharts, 0);
  }

  function start() {
    $('ranges').addEventListener('click', function (e) {
      var b = e.target.closest('button[data-range]');
      if (!b) return;
      state.range = b.getAttribute('data-range');
      $('ranges').querySelectorAll('button').forEach(function (x) {
        x.setAttribute('aria-pressed', x === b ? 'true' : 'false');
      });
      overview();
    });
    $('filter-pause').addEventListener('click', function () { filterAction('/api/filter/pause', { minutes: 5 }); });
    $('filter-pause-60').addEventListener('click', function () { filterAction('/api/filter/pause', { minutes: 60 }); });
    $('filter-resume').addEventListener('click', function () { filterAction('/api/filter/resume', {}); });
    var searchTimer = null;
    $('dev-search').addEventListener('input', function (e) {
      clearTimeout(searchTimer);
      searchTimer = setTimeout(function () {
        state.devices.search = e.target.value.trim();
        state.devices.offset = 0;
        devices();
      }, 250);
    });
    $('dev-prev').addEventListener('click', function () {
      state.devices.offset = Math.max(0, state.devices.offset - state.devices.limit);
      devices();
    });
    $('dev-next').addEventListener('click', function () {
      state.devices.offset += state.devices.limit;
      devices();
    });
    $('devices').querySelector('thead').addEventListener('click', function (e) {
      var th = e.target.closest('th[data-sort]');
      if (!th) return;
      var s = th.getAttribute('data-sort');
      var d = state.devices;
      if (d.sort === s) d.order = d.order === 'asc' ? 'desc' : 'asc';
      else {
        d.sort = s;
        d.order = s === 'ip' || s === 'hostname' ? 'asc' : 'desc';
      }
      d.offset = 0;
      devices();
    });
    $('log-filters').addEventListener('submit', function (e) {
      e.preventDefault();
      var q = logFilters().toString();
      var target = '#/log' + (q ? '?' + q : '');
      if (location.hash === target) {
        state.log.stack = [];
        loadLog();
      } else location.hash = target;
    });
    $('f-clear').addEventListener('click', function () {
      location.hash = '#/log';
    });
    $('log-older').addEventListener('click', function () {
      if (state.log.cursor === null) return;
      state.log.stack.push(state.log.cursor);
      loadLog();
    });
    $('log-newest').addEventListener('click', function () {
      state.log.stack = [];
      loadLog();
    });
    if (window.ResizeObserver) new ResizeObserver(resizeCharts).observe(document.body);
    else window.addEventListener('resize', resizeCharts);
    window.addEventListener('hashchange', route);
    api('/api/dashboard')
      .then(function (d) {
        if (d.features) features = d.features;
      })
      .catch(function () {})
      .then(refreshNames)
      .then(route);
    setInterval(refreshNames, 60000);
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
  else start();
})();
