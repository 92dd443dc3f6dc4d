/* The dashboard page (docs/design.md §7): reads each chart's usermeta.nnspec and
   builds its controls. window.nnspec = {mount, views, pick, layerNumbers, ...}.
   Charts are embedded as they near the viewport, the rest in idle time; every
   [data-spec] element gets data-rendered="yes" (or "failed") in the end. */
(function () {
  'use strict';
  var doc = document, root = doc.documentElement;
  var cards = {};      // card id -> state {id, section, chart, title, meta, spec, view, log, smoothing}
  var views = {};      // card id -> vega View
  var picked = '';     // the layer picked everywhere (graph node, table row)
  var queue = [];      // cards waiting for idle time
  var observer = null;

  /* ---------- theme ---------- */
  var stored = null;
  try { stored = window.localStorage.getItem('nnspec-theme'); } catch (e) { /* sandboxed iframe */ }
  var system = window.matchMedia ? window.matchMedia('(prefers-color-scheme: dark)') : null;
  function currentTheme() { return stored || (system && system.matches ? 'dark' : 'light'); }
  function applyTheme() {
    var t = currentTheme();
    if (root.dataset.theme === t) return;
    root.dataset.theme = t;
    var b = doc.getElementById('nn-theme');
    if (b) b.textContent = t === 'dark' ? 'Light' : 'Dark';
    Object.keys(cards).forEach(function (id) { if (cards[id].view) embed(cards[id]); });
  }
  function toggleTheme() {
    stored = currentTheme() === 'dark' ? 'light' : 'dark';
    try { window.localStorage.setItem('nnspec-theme', stored); } catch (e) { /* not kept */ }
    applyTheme();
  }
  if (system && system.addEventListener) system.addEventListener('change', applyTheme);

  /* ---------- small helpers ---------- */
  function el(tag, attrs, text) {
    var e = doc.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { e.setAttribute(k, attrs[k]); });
    if (text != null) e.textContent = text;
    return e;
  }
  function button(text, title, onclick) {
    var b = el('button', {'class': 'nn-btn', type: 'button', title: title || text}, text);
    b.addEventListener('click', onclick);
    return b;
  }
  function isObj(x) { return x !== null && typeof x === 'object' && !Array.isArray(x); }
  function metaOf(spec) {
    var u = isObj(spec) && isObj(spec.usermeta) ? spec.usermeta.nnspec : null;
    return isObj(u) ? u : {};
  }
  // Every object in a spec (layers, facets, concats, repeats), data left out.
  function walk(node, fn) {
    if (Array.isArray(node)) { node.forEach(function (n) { walk(n, fn); }); return; }
    if (!isObj(node)) return;
    fn(node);
    Object.keys(node).forEach(function (k) {
      if (k !== 'data' && k !== 'datasets' && k !== 'usermeta') walk(node[k], fn);
    });
  }
  // The inline row arrays of a spec: data.values anywhere and the top-level datasets.
  function rowSets(spec) {
    var sets = [];
    function add(rows) { if (Array.isArray(rows) && sets.indexOf(rows) < 0) sets.push(rows); }
    if (isObj(spec.datasets)) Object.keys(spec.datasets).sort().forEach(function (k) { add(spec.datasets[k]); });
    (function visit(node) {
      if (Array.isArray(node)) { node.forEach(visit); return; }
      if (!isObj(node)) return;
      if (isObj(node.data) && Array.isArray(node.data.values)) add(node.data.values);
      Object.keys(node).forEach(function (k) { if (k !== 'data' && k !== 'datasets') visit(node[k]); });
    })(spec);
    return sets;
  }
  // The chart's own rows: its top-level data (named or inline), else the first inline rows found.
  function chartRows(spec) {
    var d = spec.data;
    if (isObj(d) && Array.isArray(d.values)) return d.values;
    if (isObj(d) && typeof d.name === 'string' && isObj(spec.datasets) && Array.isArray(spec.datasets[d.name])) {
      return spec.datasets[d.name];
    }
    var sets = rowSets(spec);
    return sets.length ? sets[0] : [];
  }

  // The chart's data as objects: a table's {columns, rows} when it declares one (its inline rows are
  // the drawn cells), else its own inline rows.
  function tableRows(meta) {
    var t = meta.table;
    if (!isObj(t) || !Array.isArray(t.columns) || !Array.isArray(t.rows)) return null;
    return t.rows.filter(Array.isArray).map(function (r) {
      var o = {};
      t.columns.forEach(function (c, j) { o[c] = r[j]; });
      return o;
    });
  }
  function dataRows(spec) { return tableRows(metaOf(spec)) || chartRows(spec); }

  /* ---------- the spec each embed draws ---------- */
  function specOf(card, parsed) {
    var spec = parsed || JSON.parse(doc.getElementById(card.chart.dataset.spec).textContent);
    var meta = metaOf(spec);
    if (meta.explorer !== undefined) delete meta.explorer;  // the explorer draws it; Vega need not carry it
    if (card.log != null && isObj(meta.log)) logScale(spec, meta.log, card.log);
    if (card.smoothing != null && isObj(meta.smooth)) smooth(spec, meta.smooth, card.smoothing);
    if (meta.layer_field) setParam(spec, 'nnspec_layer', picked);
    return spec;
  }
  // Every encoding of the log's channel on its field, layers included, and on the smoothed copy of
  // that field (the smoothed line is the same quantity: it shares the scale).
  function encodings(spec, log, fn) {
    var s = metaOf(spec).smooth, fields = [log.field];
    if (isObj(s) && s.y === log.field) fields.push(s.as || 'smoothed');
    walk(spec, function (node) {
      var enc = isObj(node.encoding) ? node.encoding[log.channel] : null;
      if (isObj(enc) && fields.indexOf(enc.field) >= 0) fn(enc);
    });
  }
  function isLog(spec, log) {
    var on = false;
    encodings(spec, log, function (enc) {
      if (isObj(enc.scale) && (enc.scale.type === 'log' || enc.scale.type === 'symlog')) on = true;
    });
    return on;
  }
  function logScale(spec, log, on) {
    encodings(spec, log, function (enc) {
      var scale = isObj(enc.scale) ? enc.scale : (enc.scale = {});
      delete scale.constant;
      scale.type = on ? log.type || 'log' : 'linear';
      if (on && scale.type === 'symlog' && log.constant != null) scale.constant = log.constant;
      if (on && scale.type === 'log') scale.zero = false;
    });
  }
  function setParam(spec, name, value) {
    walk(spec, function (node) {
      (Array.isArray(node.params) ? node.params : []).forEach(function (p) {
        if (isObj(p) && p.name === name) p.value = value;
      });
    });
  }
  // TensorBoard's smoothing: a debiased exponential moving average per group, in x order.
  function ema(values, w) {
    var last = 0, n = 0;
    return values.map(function (v) {
      if (typeof v !== 'number' || !isFinite(v)) return v;
      last = last * w + (1 - w) * v;
      n += 1;
      var debias = w === 1 ? 1 : 1 - Math.pow(w, n);
      return last / debias;
    });
  }
  function smooth(spec, s, w) {
    var by = Array.isArray(s.by) ? s.by : [], as = s.as || 'smoothed';
    rowSets(spec).forEach(function (rows) {
      var groups = {};
      rows.forEach(function (r, i) {
        if (!isObj(r) || !(s.y in r)) return;
        var key = JSON.stringify(by.map(function (f) { return r[f]; }));
        (groups[key] = groups[key] || []).push(i);
      });
      Object.keys(groups).forEach(function (key) {
        var idx = groups[key].slice().sort(function (a, b) {
          var xa = rows[a][s.x], xb = rows[b][s.x];
          return xa < xb ? -1 : xa > xb ? 1 : a - b;
        });
        var out = ema(idx.map(function (i) { return rows[i][s.y]; }), w);
        idx.forEach(function (i, j) { rows[i][as] = out[j]; });
      });
    });
    setParam(spec, 'nnspec_smoothing', w);
  }

  /* ---------- embedding ---------- */
  function options() {
    var o = {actions: false, renderer: 'svg'};
    if (root.dataset.theme === 'dark') {  // Vega's dark theme on the card's own background, quieter grid lines
      o.theme = 'dark';
      o.config = {background: null, axis: {gridColor: '#3a414d', domainColor: '#7d8596', tickColor: '#7d8596'}};
    }
    return o;
  }
  // One embed at a time per card (two at once could both leave their SVG in the element): a change
  // made meanwhile embeds once more when the running one is done, with every change so far.
  function embed(card, parsed) {
    if (card.busy) { card.again = true; return card.busy; }
    var spec;
    try { spec = specOf(card, parsed); } catch (err) { return failed(card, err); }
    card.spec = spec;
    card.busy = vegaEmbed(card.chart, spec, options()).then(function (result) {
      if (card.gone) { result.view.finalize(); return; }  // swapped out of the page meanwhile
      if (card.view && card.view !== result.view) card.view.finalize();
      card.view = views[card.id] = result.view;
      card.chart.dataset.rendered = 'yes';
      fitGroup(card.section);
    }).catch(function (err) { failed(card, err); }).then(function () {
      card.busy = null;
      if (card.again && !card.gone) { card.again = false; return embed(card); }
    });
    return card.busy;
  }
  function failed(card, err) {
    card.chart.dataset.rendered = 'failed';
    card.chart.textContent = 'chart failed: ' + err;
    console.error(err);
  }
  function first(card) {  // the first embed: build the chart's controls, then draw it
    if (card.started) return card.done;
    card.started = true;
    var i = queue.indexOf(card);
    if (i >= 0) queue.splice(i, 1);
    if (observer) observer.unobserve(card.chart);
    var spec = null;
    try {
      spec = JSON.parse(doc.getElementById(card.chart.dataset.spec).textContent);
      card.meta = metaOf(spec);
      card.smoothing = null;  // as Python drew it, until the slider moves
      card.log = null;
      if (isObj(card.meta.log)) card.logShown = isLog(spec, card.meta.log);
      if (isObj(card.meta.smooth)) card.smoothShown = initialParam(spec, 'nnspec_smoothing') || 0;
      chartTools(card);
    } catch (err) { card.meta = {}; console.error(err); }
    card.done = embed(card, spec);  // the spec parsed once; later embeds parse it afresh
    return card.done;
  }
  function initialParam(spec, name) {
    var v = null;
    walk(spec, function (node) {
      (Array.isArray(node.params) ? node.params : []).forEach(function (p) {
        if (isObj(p) && p.name === name && typeof p.value === 'number') v = p.value;
      });
    });
    return v;
  }
  // Cards on screen (or nearly) now; the rest in slices of ~40 ms of work, each its own task so the
  // page paints and answers input in between (a slice's drawing runs in the promises it starts).
  var draining = false;
  function drain() {
    var near = window.innerHeight + 600, shown = [];
    queue.slice().forEach(function (card) { if (card.chart.getBoundingClientRect().top < near) shown.push(first(card)); });
    if (draining) return;
    draining = true;
    Promise.all(shown).then(function () { setTimeout(step, 0); });
    function step() {
      var t0 = performance.now();
      while (queue.length && performance.now() - t0 < 40) first(queue[0]);
      if (queue.length) setTimeout(step, 0);
      else draining = false;
    }
  }

  /* ---------- cards ---------- */
  function setupCard(section) {
    var tools = section.querySelector('.card-head .tools');
    if (tools && !tools.querySelector('.collapse')) {
      var c = button('\u2212', 'Collapse or expand this card', function () {
        var on = section.classList.toggle('collapsed');
        c.textContent = on ? '+' : '\u2212';
        c.setAttribute('aria-expanded', String(!on));
      });
      c.classList.add('collapse');
      c.setAttribute('aria-expanded', 'true');
      tools.appendChild(c);
    }
    var chart = section.querySelector('[data-spec]');
    if (!chart) return;
    var old = cards[section.id];
    if (old && old.chart === chart) return;  // mounted already
    if (old) { old.gone = true; if (old.view) old.view.finalize(); delete views[section.id]; }
    var h = section.querySelector('h2');
    var card = cards[section.id] = {id: section.id, section: section, chart: chart, title: h ? h.textContent : section.id};
    queue.push(card);
    if (observer) observer.observe(chart);
  }
  function chartTools(card) {
    var tools = card.section.querySelector('.card-head .tools'), meta = card.meta;
    if (!tools) return;
    var at = tools.querySelector('.collapse');
    function add(node) { tools.insertBefore(node, at); }
    if (isObj(meta.log)) {
      var lb = button(meta.log.type === 'symlog' ? 'symlog' : 'log', 'Log or linear scale on ' + meta.log.channel, function () {
        card.log = card.logShown = !card.logShown;
        lb.setAttribute('aria-pressed', String(card.log));
        embed(card);
      });
      lb.classList.add('nn-log');
      lb.setAttribute('aria-pressed', String(!!card.logShown));
      add(lb);
    }
    if (isObj(meta.smooth)) {
      var lab = el('label', {'class': 'nn-smooth', title: 'Smoothing (TensorBoard\u2019s debiased moving average)'}, 'smoothing ');
      var w = card.smoothShown;
      var r = el('input', {type: 'range', min: '0', max: '0.99', step: '0.01', value: String(w)});
      var out = el('span', {}, w.toFixed(2));
      var pending = null;
      r.addEventListener('input', function () {
        card.smoothing = Number(r.value);
        out.textContent = card.smoothing.toFixed(2);
        if (pending) clearTimeout(pending);
        pending = setTimeout(function () { pending = null; embed(card); }, 60);
      });
      lab.appendChild(r); lab.appendChild(out);
      add(lab);
    }
    var alt = null;  // what is shown instead of the Vega chart: an HTML table or the graph explorer
    if (isObj(meta.table) && Array.isArray(meta.table.columns) && Array.isArray(meta.table.rows)) {
      alt = el('div', {'class': 'nn-table'});
      table(alt, meta.table, meta.layer_field);
    } else if (isObj(meta.explorer) && window.nnspecGraph && window.nnspecGraph.mount) {
      alt = el('div', {'class': 'explorer'});
      try { window.nnspecGraph.mount(alt, meta.explorer, {palette: meta.palette}); } catch (err) { console.error(err); alt = null; }
    }
    if (alt) {
      card.chart.parentNode.insertBefore(alt, card.chart);
      card.chart.hidden = true;
      var name = alt.className === 'explorer' ? 'explorer' : 'table';
      var sb = button('chart', 'Show the static chart or the ' + name, function () {
        var showChart = !card.chart.hidden ? false : true;
        card.chart.hidden = !showChart;
        alt.hidden = showChart;
        sb.textContent = showChart ? name : 'chart';
      });
      sb.classList.add('nn-alt');
      add(sb);
    }
    add(exportMenu(card));
  }
  function exportMenu(card) {
    var d = el('details', {'class': 'menu nn-export'});
    d.appendChild(el('summary', {'class': 'nn-btn', title: 'Export this chart'}, 'export'));
    var box = el('div');
    ['png', 'svg', 'csv'].forEach(function (fmt) {
      box.appendChild(button(fmt.toUpperCase(), 'Download as ' + fmt.toUpperCase(), function () {
        d.open = false;
        exportChart(card.id, fmt).then(function (url) {
          if (fmt === 'csv') url = 'data:text/csv;charset=utf-8,' + encodeURIComponent(url);
          var a = el('a', {href: url, download: (card.title || card.id).replace(/[^\w.-]+/g, '_').slice(0, 80) + '.' + fmt});
          doc.body.appendChild(a); a.click(); a.remove();
        });
      }));
    });
    d.appendChild(box);
    return d;
  }
  function csvCell(v) {
    if (v == null) return '';
    var s = typeof v === 'object' ? JSON.stringify(v) : String(v);
    return /[",\r\n]/.test(s) ? '"' + s.replace(/"/g, '""') + '"' : s;
  }
  function toCSV(rows) {
    var cols = [];
    rows.forEach(function (r) { if (isObj(r)) Object.keys(r).forEach(function (k) { if (cols.indexOf(k) < 0) cols.push(k); }); });
    var lines = [cols.map(csvCell).join(',')];
    rows.forEach(function (r) { lines.push(cols.map(function (c) { return csvCell(isObj(r) ? r[c] : null); }).join(',')); });
    return lines.join('\r\n') + '\r\n';
  }
  // PNG or SVG as a data URL (view.toImageURL), or the chart's inline rows as CSV text.
  function exportChart(id, fmt) {
    var card = cards[id];
    if (!card) return Promise.reject(new Error('no chart ' + id));
    return Promise.resolve(first(card)).then(function () {
      if (fmt === 'csv') return toCSV(dataRows(card.spec));
      if (fmt === 'svg') {
        return card.view.toSVG().then(function (svg) { return 'data:image/svg+xml;charset=utf-8,' + encodeURIComponent(svg); });
      }
      return card.view.toImageURL('png', 2);
    });
  }

  /* ---------- tables: sortable, searchable, copyable ---------- */
  function text(v) { return v == null ? '' : typeof v === 'object' ? JSON.stringify(v) : String(v); }
  function table(box, data, layerField) {
    var cols = data.columns.map(String), rows = data.rows.filter(Array.isArray);
    var layerCol = cols.indexOf(layerField || 'layer');
    var bar = el('div', {'class': 'bar'});
    var search = el('input', {type: 'search', placeholder: 'Search rows', 'aria-label': 'Search rows'});
    var count = el('span');
    bar.appendChild(search);
    bar.appendChild(button('copy', 'Copy the shown rows as tab-separated text', function () { copy(tsv(shown())); }));
    bar.appendChild(count);
    var t = el('table'), thead = el('thead'), tbody = el('tbody'), hr = el('tr');
    cols.forEach(function (c, j) {
      var th = el('th', {scope: 'col', title: 'Sort by ' + c}, c);
      th.addEventListener('click', function () { sortBy(j, th); });
      hr.appendChild(th);
    });
    hr.appendChild(el('th', {'aria-label': 'copy'}));
    thead.appendChild(hr);
    var trs = rows.map(function (row) {
      var tr = el('tr');
      tr.__row = row;
      cols.forEach(function (c, j) {
        var v = row[j];
        // numbers to 4 significant digits on screen (the full value in the tooltip, and copied)
        var short = typeof v === 'number' && isFinite(v) && !Number.isInteger(v) ? String(Number(v.toPrecision(4))) : text(v);
        tr.appendChild(el('td', typeof v === 'number' ? {'class': 'num', title: text(v)} : {}, short));
      });
      var td = el('td', {'class': 'copy'});
      td.appendChild(el('button', {type: 'button', title: 'Copy this row'}, '\u29c9'));
      td.firstChild.addEventListener('click', function (e) { e.stopPropagation(); copy(tsv([row])); });
      tr.appendChild(td);
      if (layerCol >= 0) tr.addEventListener('click', function () { api.pick(row[layerCol] === picked ? '' : text(row[layerCol])); });
      tbody.appendChild(tr);
      return tr;
    });
    t.appendChild(thead); t.appendChild(tbody);
    var scroll = el('div', {'class': 'scroll'});
    scroll.appendChild(t);
    box.appendChild(bar); box.appendChild(scroll);
    box.__rows = trs; box.__cols = cols;
    function shown() {  // in the order shown
      return Array.prototype.filter.call(tbody.rows, function (tr) { return !tr.hidden; }).map(function (tr) { return tr.__row; });
    }
    function tsv(rs) {
      return [cols].concat(rs).map(function (r) {
        return r.map(function (v) { return text(v).replace(/[\t\r\n]+/g, ' '); }).join('\t');
      }).join('\n') + '\n';
    }
    function filter() {
      var q = search.value.trim().toLowerCase(), n = 0;
      trs.forEach(function (tr) {
        var hit = !q || tr.__row.some(function (v) { return text(v).toLowerCase().indexOf(q) >= 0; });
        tr.hidden = !hit;
        n += hit;
      });
      count.textContent = (q ? n + ' of ' : '') + trs.length + (trs.length === 1 ? ' row' : ' rows');
    }
    function sortBy(j, th) {
      var desc = th.getAttribute('aria-sort') === 'ascending';
      hr.querySelectorAll('th').forEach(function (h) { h.removeAttribute('aria-sort'); });
      th.setAttribute('aria-sort', desc ? 'descending' : 'ascending');
      var sorted = trs.slice().sort(function (a, b) {
        var x = a.__row[j], y = b.__row[j], c;
        if (x == null || y == null) c = (x == null) - (y == null);  // blanks last either way
        else if (typeof x === 'number' && typeof y === 'number') c = desc ? y - x : x - y;
        else c = desc ? text(y).localeCompare(text(x), undefined, {numeric: true}) : text(x).localeCompare(text(y), undefined, {numeric: true});
        return c || trs.indexOf(a) - trs.indexOf(b);
      });
      sorted.forEach(function (tr) { tbody.appendChild(tr); });
    }
    box.__copy = function () { return tsv(shown()); };
    search.addEventListener('input', filter);
    filter();
    markPicked(box);
  }
  function markPicked(box) {
    (box.__rows || []).forEach(function (tr) { tr.classList.toggle('picked', picked !== '' && tr.__row.some(function (v) { return v === picked; })); });
  }
  function copy(s) {
    if (navigator.clipboard && navigator.clipboard.writeText) {
      return navigator.clipboard.writeText(s).catch(function () { copyFallback(s); });
    }
    copyFallback(s);
    return Promise.resolve();
  }
  function copyFallback(s) {
    var ta = el('textarea');
    ta.value = s;
    doc.body.appendChild(ta); ta.select();
    try { doc.execCommand('copy'); } catch (e) { /* nothing more to try */ }
    ta.remove();
  }

  /* ---------- layout: repeat groups wrap rather than overflow ---------- */
  var fitting = null;
  function fitGroup(section) {
    if (section.parentNode && section.parentNode.classList && section.parentNode.classList.contains('group')) fitSoon();
  }
  function fitSoon() {
    if (fitting) return;
    fitting = window.requestAnimationFrame(function () {
      fitting = null;
      doc.querySelectorAll('.group').forEach(function (g) {
        g.classList.remove('wrap');
        if (g.scrollWidth > g.clientWidth + 1) g.classList.add('wrap');
      });
    });
  }
  window.addEventListener('resize', fitSoon);

  /* ---------- sidebar and filter ---------- */
  function applyFilter() {
    var box = doc.getElementById('nn-filter');
    var q = box ? box.value.trim().toLowerCase() : '', shown = 0, total = 0;
    doc.querySelectorAll('section.card[data-search]').forEach(function (s) {
      var hit = !q || s.dataset.search.toLowerCase().indexOf(q) >= 0;
      s.hidden = !hit;
      total += 1; shown += hit;
      var li = doc.querySelector('.nn-side li[data-card="' + s.id + '"]');
      if (li) li.hidden = !hit;
    });
    doc.querySelectorAll('.group').forEach(function (g) { g.hidden = !g.querySelector('section.card:not([hidden])'); });
    var c = doc.getElementById('nn-count');
    if (c) c.textContent = (q ? shown + ' of ' : '') + total + (total === 1 ? ' view' : ' views');
  }
  function setupPage() {
    var f = doc.getElementById('nn-filter');
    if (f) f.addEventListener('input', applyFilter);
    var t = doc.getElementById('nn-theme');
    if (t) t.addEventListener('click', toggleTheme);
    var s = doc.getElementById('nn-side-toggle');
    if (s) s.addEventListener('click', function () { doc.body.classList.toggle('nn-noside'); });
    doc.addEventListener('keydown', function (e) {  // '/' goes to the filter, as in most viewers
      var t = e.target && e.target.tagName;
      if (e.key === '/' && f && t !== 'INPUT' && t !== 'TEXTAREA' && t !== 'SELECT' && !e.ctrlKey && !e.metaKey) {
        e.preventDefault();
        f.focus();
      }
    });
    doc.addEventListener('click', function (e) {  // an open export menu closes on a click elsewhere
      doc.querySelectorAll('details.menu[open]').forEach(function (d) { if (!d.contains(e.target)) d.open = false; });
    });
    doc.querySelectorAll('.nn-side a[href^="#"]').forEach(function (a) {
      a.addEventListener('click', function () { reveal(a.getAttribute('href').slice(1)); });
    });
    if (window.IntersectionObserver) {
      observer = new IntersectionObserver(function (entries) {
        entries.forEach(function (e) {
          if (!e.isIntersecting) return;
          var s = e.target.closest('section');
          if (s && cards[s.id]) first(cards[s.id]);
        });
      }, {rootMargin: '600px 0px'});
    }
  }
  function tables(node) {  // the runs' table (and any other [data-table] panel), built once each
    var boxes = node.matches && node.matches('[data-table]') ? [node] : [];
    node.querySelectorAll('[data-table]').forEach(function (b) { boxes.push(b); });
    boxes.forEach(function (box) {
      if (box.__rows) return;
      try { table(box, JSON.parse(doc.getElementById(box.dataset.table).textContent), 'run'); } catch (e) { console.error(e); }
    });
  }
  // The sidebar lists the cards in page order (nnspec serve may add, drop or retitle cards).
  function syncSidebar() {
    var list = doc.querySelector('.nn-side ol');
    if (!list) return;
    var have = {};
    list.querySelectorAll('li[data-card]').forEach(function (li) { have[li.dataset.card] = li; });
    doc.querySelectorAll('main section.card[id]:not(.checks)').forEach(function (s) {
      var li = have[s.id], h = s.querySelector('h2'), title = h ? h.textContent : s.id;
      delete have[s.id];
      if (!li) {
        li = el('li', {'data-card': s.id});
        li.appendChild(el('a', {href: '#' + s.id}));
        li.firstChild.addEventListener('click', function () { reveal(s.id); });
      }
      li.classList.toggle('failed', s.classList.contains('failed'));
      if (li.firstChild.textContent !== title) li.firstChild.textContent = title;
      list.appendChild(li);  // in page order
    });
    Object.keys(have).forEach(function (id) { have[id].remove(); });
  }
  function reveal(id) {  // a collapsed card opens when its entry is clicked; its chart draws now
    var target = doc.getElementById(id);
    chosen = id;
    if (target && target.classList.contains('collapsed')) target.querySelector('.collapse').click();
    if (target && cards[target.id]) first(cards[target.id]);
  }

  // The sidebar marks the first card at the top of the window.
  var inView = {}, chosen = null;  // chosen: the card last clicked in the sidebar, while it is in view
  var spy = window.IntersectionObserver ? new IntersectionObserver(function (entries) {
    entries.forEach(function (e) { if (e.isIntersecting) inView[e.target.id] = e.target; else delete inView[e.target.id]; });
    var top = chosen && inView[chosen] ? inView[chosen] : null;
    Object.keys(top ? {} : inView).forEach(function (id) {
      if (!top || inView[id].compareDocumentPosition(top) & Node.DOCUMENT_POSITION_FOLLOWING) top = inView[id];
    });
    doc.querySelectorAll('.nn-side li.current').forEach(function (li) { li.classList.remove('current'); });
    var li = top && doc.querySelector('.nn-side li[data-card="' + top.id + '"]');
    if (li) li.classList.add('current');
  }, {rootMargin: '0px 0px -60% 0px'}) : null;

  /* ---------- the API (nnspec serve swaps cards and calls mount) ---------- */
  var api = {
    views: views,
    mount: function (node) {
      node = node || doc;
      var sections = [];
      if (node.matches && node.matches('section.card')) sections.push(node);
      node.querySelectorAll('section.card').forEach(function (s) { sections.push(s); });
      sections.forEach(setupCard);
      if (spy) sections.forEach(function (sec) { spy.observe(sec); });
      tables(node);
      if (node !== doc) syncSidebar();
      Object.keys(cards).forEach(function (id) {  // cards swapped out of the page
        if (!doc.contains(cards[id].chart)) {
          cards[id].gone = true;
          if (spy) spy.unobserve(cards[id].section);
          if (cards[id].view) cards[id].view.finalize();
          if (views[id] === cards[id].view) delete views[id];
          delete cards[id];
        }
      });
      applyFilter();
      drain();
    },
    // Highlight a layer (a module path; '' for none) in every chart that declares layer_field.
    pick: function (layer) {
      picked = layer == null ? '' : String(layer);
      var done = [];
      Object.keys(cards).forEach(function (id) {
        var card = cards[id], view = card.view;
        if (!view || !card.meta || !card.meta.layer_field) return;
        try { view.signal('nnspec_layer'); } catch (e) { return; }  // no such signal in this chart
        done.push(view.signal('nnspec_layer', picked).runAsync());
      });
      doc.querySelectorAll('.nn-table').forEach(markPicked);
      doc.querySelectorAll('[data-nodes]').forEach(function (el) {  // graph explorers outline the layer
        if (el.nnspecGraph && el.nnspecGraph.highlight) {
          try { el.nnspecGraph.highlight(picked); } catch (e) { console.error(e); }
        }
      });
      return Promise.all(done).then(function () { return picked; });
    },
    picked: function () { return picked; },
    // Per chart with a layer_field, the row naming this layer: [{view: card title, values: {column: value}}].
    // Charts with several rows for the layer (histogram bins, steps) are left out: not one number each.
    layerNumbers: function (layer) {
      var out = [];
      Object.keys(cards).sort(function (a, b) { return order(a) - order(b); }).forEach(function (id) {
        var card = cards[id], field;
        try {
          var spec = card.spec || JSON.parse(doc.getElementById(card.chart.dataset.spec).textContent);
          field = metaOf(spec).layer_field;
          if (!field) return;
          var hits = [], table = tableRows(metaOf(spec));
          (table ? [table] : rowSets(spec)).forEach(function (rows) {
            rows.forEach(function (r) { if (isObj(r) && r[field] === layer) hits.push(r); });
          });
          if (hits.length !== 1) return;
          var values = {};
          Object.keys(hits[0]).forEach(function (k) { if (k !== field) values[k] = hits[0][k]; });
          out.push({view: card.title, values: values});
        } catch (e) { /* a chart that cannot say */ }
      });
      return out;
    },
    export: exportChart,
    embed: function (id) { return cards[id] ? first(cards[id]) : Promise.resolve(); },
    cards: cards
  };
  function order(id) { var m = /(\d+)$/.exec(id); return m ? Number(m[1]) : 0; }
  window.nnspec = api;

  applyTheme();
  setupPage();
  api.mount(doc);
})();
