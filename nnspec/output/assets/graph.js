/* nnspec's graph explorer: the architecture graph as an SVG to zoom, pan, expand,
 * collapse, fold, unfold and search, from the payload of nnspec/execute/explore.py.
 * No dependencies, no network. window.nnspecGraph.mount(el, payload, {palette, height})
 * draws into el and returns an object with expand/collapse/fold/unfold/search/select/fit.
 * The visible graph of a state (expanded groups, folded runs) is explore.visible's rule. */
(function () {
  'use strict';
  var NS = 'http://www.w3.org/2000/svg';
  var TABLEAU20 = ['#4c78a8', '#9ecae9', '#f58518', '#ffbf79', '#54a24b', '#88d27a', '#b79a20', '#f2cf5b',
    '#439894', '#83bcb6', '#e45756', '#ff9d98', '#79706e', '#bab0ac', '#d67195', '#fcbfd2', '#b279a2',
    '#d6a5c9', '#9e765f', '#d8b5a5'];
  var BOX_H = 34, MIN_W = 70, MAX_W = 230, GAP_X = 22, RANK = 86, FONT = '11px sans-serif';
  var STUB_SPAN = 4, STUB_DEGREE = 3, STUB_LEN = 22;  // 3+ edges of one node longer than 4 ranks: stubs
  var MARGIN = 70;  // room around the boxes for the outlines of open groups
  var uid = 0;

  function esc(s) {
    return String(s).replace(/[&<>"]/g, function (c) {
      return { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' }[c];
    });
  }
  function shape(s) { return s ? s.join('×') : ''; }
  function parentOf(p) { var i = p.lastIndexOf('.'); return i < 0 ? '' : p.slice(0, i); }
  function under(p, g) { return p === g || p.slice(0, g.length + 1) === g + '.'; }

  var measure = null;
  function textWidth(s) {
    if (!measure) { measure = document.createElement('canvas').getContext('2d'); measure.font = FONT; }
    return measure.measureText(s).width;
  }
  // a line cut from the left to fit px, at a dot where it can, so the module's own name stays
  function elide(s, px) {
    if (textWidth(s) <= px) return s;
    var tail = s;
    while (tail.length > 1 && textWidth('…' + tail) > px) tail = tail.slice(1);
    var dot = tail.indexOf('.');
    return '…' + (dot >= 0 && dot < tail.length - 4 ? tail.slice(dot + 1) : tail);
  }

  function Explorer(el, data, options) {
    this.el = el;
    this.data = data;
    this.options = options || {};
    this.id = 'nnspecg' + (++uid);
    this.nodes = {};
    var self = this;
    data.n.forEach(function (n) { self.nodes[n[0]] = n; });
    this.runs = data.r.map(function (r) {
      var first = {}, every = {};
      r.ids[0].forEach(function (x) { first[x] = 1; });
      r.ids.forEach(function (b) { b.forEach(function (x) { every[x] = 1; }); });
      return { blocks: r.b, ids: r.ids, first: first, every: every };
    });
    this.expanded = {};
    data.init.x.forEach(function (p) { self.expanded[p] = 1; });
    this.folded = {};
    data.init.f.forEach(function (i) { self.folded[i] = 1; });
    this.palette = this.makePalette(this.options.palette || {});
    this.view = { x: 0, y: 0, k: 1 };
    this.matches = null;
    this.build();
    this.redraw(true);
  }

  Explorer.prototype.makePalette = function (given) {
    var types = {}, data = this.data;
    Object.keys(data.m).forEach(function (p) { if (data.m[p].t) types[data.m[p].t] = 1; });
    data.n.forEach(function (n) { if (n[1] !== 'm') types[n[2]] = 1; });
    var out = {};
    Object.keys(types).sort().forEach(function (t, i) { out[t] = given[t] || TABLEAU20[i % 20]; });
    return out;
  };

  // ---- the visible graph of the state (explore.visible, line for line) ----
  Explorer.prototype.visible = function () {
    var data = this.data, self = this, counterpart = {}, members = {};
    Object.keys(this.folded).map(Number).sort(function (a, b) { return a - b; }).forEach(function (i) {
      var r = self.runs[i];
      if (r.ids[0].length && counterpart[r.ids[0][0]] !== undefined) return;
      for (var b = 1; b < r.ids.length; b++) {
        for (var j = 0; j < r.ids[b].length; j++) counterpart[r.ids[b][j]] = r.ids[0][j];
      }
      Object.keys(r.every).forEach(function (x) { (members[x] = members[x] || []).push(r); });
    });
    function home(x) { while (counterpart[x] !== undefined) x = counterpart[x]; return x; }
    var keyOf = {}, shown = {}, order = [];
    data.n.forEach(function (n) {
      if (counterpart[n[0]] !== undefined) return;
      var key = self.key(n);
      keyOf[n[0]] = key;
      if (!shown[key]) { shown[key] = { key: key, ids: [], node: n }; order.push(key); }
      shown[key].ids.push(n[0]);
      shown[key].last = n;
    });
    var edges = {}, list = [];
    data.e.forEach(function (e) {
      var a = e[0], b = e[1], rs = members[a] || [];
      for (var i = 0; i < rs.length; i++) if (rs[i].every[b] && !(rs[i].first[a] && rs[i].first[b])) return;
      var ka = keyOf[home(a)], kb = keyOf[home(b)];
      if (ka === undefined || kb === undefined || ka === kb) return;
      var k = ka + '\u0000' + kb;
      if (!edges[k]) { edges[k] = 1; list.push([ka, kb]); }
    });
    return { keys: order, nodes: shown, edges: list };
  };

  Explorer.prototype.key = function (n) {
    var kind = n[1], scope = n[3], calls = n[5];
    if (kind === 'i' || kind === 'o') return n[2];
    var parts = scope ? scope.split('.') : [];
    for (var k = 1; k <= parts.length; k++) {
      var path = parts.slice(0, k).join('.');
      if (!this.expanded[path] || (k === parts.length && kind === 'm')) {
        if (this.data.m[path].c > 1) return path + ':' + (calls.length >= k ? calls[k - 1] : 1);
        return path;
      }
    }
    return n[2] + '#' + n[0];
  };

  // the path as drawn (a folded block's path spans its run) and how many it stands for
  Explorer.prototype.display = function (path) {
    var shown = path, times = 1, self = this;
    Object.keys(this.folded).map(Number).sort(function (a, b) { return b - a; }).forEach(function (i) {
      var b = self.runs[i].blocks;
      if (under(path, b[0])) {
        var last = b[b.length - 1];
        shown = b[0] + '–' + last.slice(last.lastIndexOf('.') + 1) + shown.slice(b[0].length);
        times *= b.length;
      }
    });
    return { path: shown, times: times };
  };

  Explorer.prototype.describe = function (v) {
    var n = v.node, kind = n[1], key = v.key;
    if (kind === 'i' || kind === 'o') {
      return { key: key, kind: kind, type: n[2], path: '', lines: [n[2]], title: n[2] + ' ' + shape(n[4]),
        shape: v.last[4] };
    }
    var path = key.indexOf('#') >= 0 ? n[3] : key.split(':')[0];
    var call = key.indexOf(':') >= 0 && key.indexOf('#') < 0 ? key.split(':')[1] : null;
    var d = this.display(path), isOp = key.indexOf('#') >= 0;
    var mod = this.data.m[path] || {};
    var type = isOp ? n[2] : mod.t;
    var times = d.times > 1 ? ' ×' + d.times : '';
    var run = this.runOf(path);
    var first = isOp ? n[2] + times : d.path + (call ? ' (call ' + call + ')' : '');
    var lines = isOp ? [first] : [first, type + times];
    return { key: key, kind: isOp ? 'p' : 'm', path: path, shown: d.path, type: type, times: d.times,
      group: !isOp && !!mod.g, run: run, lines: lines, shape: v.last[4],
      title: (isOp ? n[2] + ' in ' + (d.path || '(model)') : d.path + (call ? ' (call ' + call + ')' : '')) +
        '\n' + type + times + (v.last[4] ? '\n' + shape(v.last[4]) : '') };
  };

  // the folded run whose first block is ``path`` (drawn whole when collapsed), or -1
  Explorer.prototype.runOf = function (path) {
    for (var i in this.folded) if (this.runs[i].blocks[0] === path) return Number(i);
    return -1;
  };

  // ---- layout: longest-path ranks, dummies on long edges, barycentre order, x by neighbours ----
  Explorer.prototype.layout = function (g) {
    var keys = g.keys, n = keys.length, idx = {}, i;
    keys.forEach(function (k, j) { idx[k] = j; });
    var succ = [], pred = [];
    for (i = 0; i < n; i++) { succ.push([]); pred.push([]); }
    g.edges.forEach(function (e) { succ[idx[e[0]]].push(idx[e[1]]); pred[idx[e[1]]].push(idx[e[0]]); });
    // topological order (Kahn); what a cycle leaves, in trace order
    var indeg = pred.map(function (p) { return p.length; }), topo = [], queue = [], seen = [];
    for (i = 0; i < n; i++) if (!indeg[i]) queue.push(i);
    while (topo.length < n) {
      if (!queue.length) { for (i = 0; i < n; i++) if (!seen[i]) { queue.push(i); break; } }
      var v = queue.shift();
      if (seen[v]) continue;
      seen[v] = 1; topo.push(v);
      succ[v].forEach(function (s) { if (--indeg[s] <= 0 && !seen[s]) queue.push(s); });
    }
    var pos = []; topo.forEach(function (v, j) { pos[v] = j; });
    var rank = [], fed = [];
    topo.forEach(function (v) {
      rank[v] = 0;
      fed[v] = g.nodes[keys[v]].node[1] === 'i';
      pred[v].forEach(function (p) {
        if (pos[p] < pos[v] && fed[p]) { fed[v] = true; rank[v] = Math.max(rank[v], rank[p] + 1); }
      });
    });
    for (i = n - 1; i >= 0; i--) {  // what the inputs do not reach: as late as its consumers allow
      var w = topo[i], later = succ[w].filter(function (s) { return pos[s] > pos[w]; });
      if (!fed[w] && later.length) rank[w] = Math.min.apply(null, later.map(function (s) { return rank[s]; })) - 1;
    }
    var low = Math.min.apply(null, rank.concat([0]));
    rank = rank.map(function (r) { return r - low; });
    // items: real nodes, then dummies; each edge a chain of items through every rank it crosses
    var items = keys.map(function (k, j) { return { j: j, rank: rank[j], w: 0, up: [], down: [] }; });
    // a node feeding many others far below (Llama's rotary embedding, a shared mask) would send
    // long edges across everything: as TensorBoard does, those edges become short stubs into
    // their targets, named after their source (the tooltip and the panel say which)
    function long(e) { return rank[idx[e[1]]] - rank[idx[e[0]]] > STUB_SPAN; }
    var farOut = succ.map(function () { return 0; }), stubs = [];
    g.edges.forEach(function (e) { if (long(e)) farOut[idx[e[0]]]++; });
    var routed = g.edges.filter(function (e) {
      var far = long(e) && farOut[idx[e[0]]] >= STUB_DEGREE;  // one long edge (a residual) stays drawn
      if (far) stubs.push([idx[e[0]], idx[e[1]]]);
      return !far;
    });
    var chains = routed.map(function (e) {
      var a = idx[e[0]], b = idx[e[1]], chain = [a];
      if (rank[b] > rank[a]) {
        for (var r = rank[a] + 1; r < rank[b]; r++) {
          items.push({ j: -1, rank: r, w: 0, up: [], down: [] });
          chain.push(items.length - 1);
        }
      }
      chain.push(b);
      for (var c = 1; c < chain.length; c++) {
        if (items[chain[c]].rank > items[chain[c - 1]].rank) {
          items[chain[c - 1]].down.push(chain[c]); items[chain[c]].up.push(chain[c - 1]);
        }
      }
      return chain;
    });
    var layers = [];
    // first order: by topological position (dummies after their source)
    var seq = topo.slice();
    for (i = n; i < items.length; i++) seq.push(i);
    var key0 = items.map(function (it, j) { return j < n ? pos[j] : n; });
    seq.forEach(function (j) { (layers[items[j].rank] = layers[items[j].rank] || []).push(j); });
    for (i = 0; i < layers.length; i++) layers[i] = layers[i] || [];
    var at = [];
    function place() { layers.forEach(function (l) { l.forEach(function (j, k) { at[j] = k; }); }); }
    place();
    layers.forEach(function (l) { l.sort(function (a, b) { return key0[a] - key0[b]; }); });
    place();
    function sweep(down) {
      var start = down ? 1 : layers.length - 2, end = down ? layers.length : -1, step = down ? 1 : -1;
      for (var r = start; r !== end; r += step) {
        var bary = {};
        layers[r].forEach(function (j) {
          var nb = down ? items[j].up : items[j].down;
          bary[j] = nb.length ? nb.reduce(function (s, x) { return s + at[x]; }, 0) / nb.length : at[j];
        });
        layers[r].sort(function (a, b) { return bary[a] - bary[b] || at[a] - at[b]; });
        layers[r].forEach(function (j, k) { at[j] = k; });
      }
    }
    for (i = 0; i < 4; i++) { sweep(true); sweep(false); }
    // sizes
    var self = this;
    var info = keys.map(function (k) { return self.describe(g.nodes[k]); });
    info.forEach(function (d, j) {
      var mark = d.group || d.run >= 0 ? 24 : 0;  // room both sides for the +/⧉ mark, text centred
      var wide = Math.max.apply(null, d.lines.map(textWidth)) + 16 + mark;
      items[j].w = Math.max(MIN_W, Math.min(MAX_W, wide));
      d.lines = d.lines.map(function (s) { return elide(s, items[j].w - 12 - mark); });
    });
    // x: packed, then pulled towards neighbours, keeping order and gaps
    var x = [];
    layers.forEach(function (l) {
      var cur = 0;
      l.forEach(function (j) { x[j] = cur + items[j].w / 2; cur += items[j].w + GAP_X; });
    });
    function sep(a, b) { return (items[a].w + items[b].w) / 2 + (items[a].j < 0 && items[b].j < 0 ? 8 : GAP_X); }
    function settle(l, want) {
      var L = [], R = [], m = l.length, k;
      for (k = 0; k < m; k++) L[k] = k ? Math.max(want[k], L[k - 1] + sep(l[k - 1], l[k])) : want[k];
      for (k = m - 1; k >= 0; k--) R[k] = k < m - 1 ? Math.min(want[k], R[k + 1] - sep(l[k], l[k + 1])) : want[k];
      for (k = 0; k < m; k++) x[l[k]] = (L[k] + R[k]) / 2;
    }
    for (var it = 0; it < 8; it++) {
      var down = it % 2 === 0;
      for (var q = 0; q < layers.length; q++) {
        var r = down ? q : layers.length - 1 - q, l = layers[r];
        var want = l.map(function (j) {
          var nb = (down ? items[j].up : items[j].down).concat(it > 3 ? (down ? items[j].down : items[j].up) : []);
          if (!nb.length) return x[j];
          var xs = nb.map(function (z) { return x[z]; }).sort(function (a, b) { return a - b; });
          return (xs[(xs.length - 1) >> 1] + xs[xs.length >> 1]) / 2;
        });
        settle(l, want);
      }
    }
    var minX = Infinity;
    items.forEach(function (it2, j) { minX = Math.min(minX, x[j] - it2.w / 2); });
    var out = { info: info, boxes: [], paths: [], width: 0, height: layers.length * RANK };
    info.forEach(function (d, j) {
      var b = { x: x[j] - minX - items[j].w / 2, y: items[j].rank * RANK, w: items[j].w, h: BOX_H, d: d };
      out.boxes.push(b);
      out.width = Math.max(out.width, b.x + b.w);
    });
    chains.forEach(function (chain) {
      var pts = chain.map(function (j) { return [x[j] - minX, items[j].rank * RANK + BOX_H / 2]; });
      out.paths.push(pts);
    });
    out.stubs = stubs.map(function (ab) {
      return { x: x[ab[1]] - minX, y: items[ab[1]].rank * RANK, from: info[ab[0]], to: info[ab[1]] };
    });
    return out;
  };

  // ---- drawing ----
  Explorer.prototype.build = function () {
    var el = this.el, self = this;
    el.innerHTML = '';
    el.classList.add('nnspec-graph');
    var root = document.createElement('div');
    root.style.cssText = 'position:relative;width:100%;min-width:320px;height:' + (this.options.height || 640) + 'px;border:1px solid var(--line,#d5d9e0);' +
      'border-radius:6px;overflow:hidden;background:var(--card,#fff);color:var(--fg,#111);font:12px sans-serif;' +
      'touch-action:none';
    root.innerHTML =
      '<div class="ng-bar" style="position:absolute;left:8px;top:8px;z-index:2;display:flex;gap:6px;' +
      'background:var(--card,#fff);border-radius:4px;padding:2px">' +
      '<input class="ng-search" type="search" placeholder="search layers (text or /regex/)" ' +
      'style="width:min(200px,40vw);padding:3px 6px"><button class="ng-fit" type="button">fit</button>' +
      '<button class="ng-reset" type="button">reset</button><span class="ng-status" ' +
      'style="align-self:center;color:var(--muted,#667)"></span></div>' +
      '<div class="ng-panel" style="display:none;position:absolute;right:8px;top:8px;max-height:calc(100% - 16px);' +
      'width:min(280px,42%);box-sizing:border-box;' +
      'z-index:2;overflow:auto;background:var(--card,#fff);color:var(--fg,#111);border:1px solid var(--line,#d5d9e0);' +
      'border-radius:6px;padding:8px 10px"></div>';
    el.appendChild(root);
    // the whole drawing is one SVG moved by one CSS transform on its own compositing layer:
    // a pan or zoom repaints nothing, so it stays fluid at thousands of nodes
    var pane = document.createElement('div');
    pane.className = 'ng-pane';
    pane.style.cssText = 'position:absolute;inset:0;overflow:hidden;cursor:grab';
    var svg = document.createElementNS(NS, 'svg');
    svg.style.cssText = 'position:absolute;left:0;top:0;transform-origin:0 0;will-change:transform;overflow:visible';
    svg.innerHTML = '<defs><marker id="' + this.id + '-a" viewBox="0 0 10 10" refX="10" refY="5" ' +
      'markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M0,0L10,5L0,10z" fill="#8a93a5"/>' +
      '</marker></defs><g class="ng-vp" transform="translate(' + MARGIN + ',' + MARGIN + ')"></g>';
    pane.appendChild(svg);
    root.insertBefore(pane, root.firstChild);
    this.root = root; this.svg = svg; this.pane = pane; this.vp = svg.querySelector('.ng-vp');
    this.panel = root.querySelector('.ng-panel');
    this.status = root.querySelector('.ng-status');
    var search = root.querySelector('.ng-search');
    search.addEventListener('keydown', function (e) { if (e.key === 'Enter') self.search(search.value); });
    search.addEventListener('search', function () { self.search(search.value); });
    root.querySelector('.ng-fit').addEventListener('click', function () { self.fit(); });
    root.querySelector('.ng-reset').addEventListener('click', function () { self.reset(); });
    pane.addEventListener('wheel', function (e) {
      e.preventDefault();  // the page must not scroll under the graph
      var r = pane.getBoundingClientRect(), dy = e.deltaY * (e.deltaMode === 1 ? 16 : e.deltaMode === 2 ? 400 : 1);
      self.zoomAt(e.clientX - r.left, e.clientY - r.top, Math.exp(-dy * 0.0015));
    }, { passive: false });
    if (window.ResizeObserver) {
      new ResizeObserver(function () { if (!self.fitted && self.lay) self.fit(); }).observe(pane);
    }
    root.addEventListener('keydown', function (e) {
      if (e.key === 'Escape' && self.panel.style.display !== 'none') {
        self.panel.style.display = 'none'; self.selected = null; self.redraw();
      }
    });
    var drag = null;
    pane.addEventListener('pointerdown', function (e) {
      drag = { x: e.clientX, y: e.clientY, vx: self.view.x, vy: self.view.y, moved: false };
    });
    pane.addEventListener('pointermove', function (e) {
      if (!drag) return;
      var dx = e.clientX - drag.x, dy = e.clientY - drag.y;
      if (!drag.moved && Math.abs(dx) + Math.abs(dy) < 4) return;
      if (!drag.moved) { drag.moved = true; try { pane.setPointerCapture(e.pointerId); } catch (err) { /* gone */ } }
      self.view.x = drag.vx + dx; self.view.y = drag.vy + dy;
      self.apply();
    });
    pane.addEventListener('pointerup', function (e) {
      var was = drag; drag = null;
      if (was && was.moved) return;
      var t = e.target.closest ? e.target.closest('[data-i],[data-g]') : null;
      if (t) self.clicked(t, e);
    });
  };

  Explorer.prototype.clicked = function (t, e) {
    if (t.hasAttribute('data-g')) { this.collapse(t.getAttribute('data-g')); return; }
    var d = this.lay.info[Number(t.getAttribute('data-i'))];
    if (e && (e.shiftKey || e.altKey) && d.path) { this.collapse(parentOf(d.path)); return; }
    if (d.run >= 0) { this.unfold(d.run); return; }
    if (d.group) { this.expand(d.path); return; }
    this.select(d);
  };

  Explorer.prototype.redraw = function (fit) {
    var g = this.visible(), lay = this.layout(g), self = this, parts = [], i;
    this.lay = lay;
    // expanded groups: an outline around what they hold, its name a button that collapses it
    var boxes = {}, depthOf = {};
    lay.boxes.forEach(function (b) {
      var p = b.d.kind === 'p' ? b.d.path : parentOf(b.d.path);
      if (b.d.group) p = parentOf(b.d.path);
      for (; p; p = parentOf(p)) {
        if (!self.expanded[p]) continue;
        var o = boxes[p] || (boxes[p] = { x0: Infinity, y0: Infinity, x1: -Infinity, y1: -Infinity });
        o.x0 = Math.min(o.x0, b.x); o.y0 = Math.min(o.y0, b.y);
        o.x1 = Math.max(o.x1, b.x + b.w); o.y1 = Math.max(o.y1, b.y + b.h);
      }
    });
    var open = Object.keys(boxes).sort(function (a, b) { return a.split('.').length - b.split('.').length; });
    open.forEach(function (p) { depthOf[p] = 0; });
    open.slice().reverse().forEach(function (p) {
      var up = parentOf(p);
      for (; up; up = parentOf(up)) if (depthOf[up] !== undefined) { depthOf[up] = Math.max(depthOf[up], depthOf[p] + 1); break; }
    });
    open.forEach(function (p) {
      // nested outlines that start on one rank keep their names apart: 12 px a level
      var o = boxes[p], pad = 6 + 6 * Math.min(depthOf[p], 4), top = 14 + 12 * Math.min(depthOf[p], 3);
      var d = self.display(p);
      parts.push('<g class="ng-group"><rect x="' + (o.x0 - pad) + '" y="' + (o.y0 - top) + '" width="' +
        (o.x1 - o.x0 + 2 * pad) + '" height="' + (o.y1 - o.y0 + Math.min(pad, 20) + top) + '" rx="6" fill="#8a93a5" ' +
        'fill-opacity="0.05" stroke="#8a93a5" stroke-dasharray="3 3"/><text data-g="' + esc(p) + '" x="' +
        (o.x0 - pad + 4) + '" y="' + (o.y0 - top + 10) + '" font-size="9" style="fill:var(--muted,#556);cursor:pointer">▾ ' +
        esc(elide(d.path, Math.max(o.x1 - o.x0 + 2 * pad - 16, 40))) + '<title>collapse ' + esc(d.path) +
        '</title></text></g>');
    });
    lay.paths.forEach(function (pts) {
      var a = pts[0], z = pts[pts.length - 1], d;
      var start = [a[0], a[1] + BOX_H / 2], end = [z[0], z[1] - BOX_H / 2];
      if (end[1] <= start[1]) {  // a back edge (a cycle): around the side
        d = 'M' + start[0] + ',' + start[1] + 'C' + (start[0] + 60) + ',' + (start[1] + 40) + ' ' + (end[0] + 60) +
          ',' + (end[1] - 40) + ' ' + end[0] + ',' + end[1];
      } else {
        var p = [start].concat(pts.slice(1, -1)).concat([end]);
        d = 'M' + p[0][0] + ',' + p[0][1];
        for (i = 1; i < p.length; i++) {
          var m = (p[i - 1][1] + p[i][1]) / 2;
          d += 'C' + p[i - 1][0] + ',' + m + ' ' + p[i][0] + ',' + m + ' ' + p[i][0] + ',' + p[i][1];
        }
      }
      parts.push('<path d="' + d + '" fill="none" stroke="#8a93a5" stroke-width="1.3" marker-end="url(#' +
        self.id + '-a)"/>');
    });
    var into = {};  // stubs into one target fan out side by side
    lay.stubs.forEach(function (st) {
      var k = into[st.to.key] = (into[st.to.key] || 0) + 1, dx = (k - 1) * 10 - 6;
      var x0 = st.x + dx - 10, y0 = st.y - STUB_LEN, name = st.from.path || st.from.name || st.from.key;
      parts.push('<g class="ng-stub"><path d="M' + x0 + ',' + y0 + 'L' + (st.x + dx) + ',' + st.y + '" fill="none" ' +
        'stroke="#8a93a5" stroke-width="1.3" stroke-dasharray="3 2" marker-end="url(#' + self.id + '-a)"/>' +
        '<circle cx="' + x0 + '" cy="' + y0 + '" r="3" fill="' + (self.palette[st.from.type] || '#8a93a5') + '"/>' +
        '<title>from ' + esc(name) + ' (drawn as a stub: it feeds many layers far below)</title></g>');
    });
    var hit = this.matches;
    lay.boxes.forEach(function (b, j) {
      var d = b.d, fill = self.palette[d.type] || '#c7ccd6', found = hit && self.holds(d, hit);
      var sel = self.selected && self.selected === d.key || self.marked && d.path && under(self.marked, d.path);
      parts.push('<g data-i="' + j + '" transform="translate(' + b.x + ',' + b.y + ')" style="cursor:pointer">' +
        '<rect width="' + b.w + '" height="' + b.h + '" rx="4" fill="' + fill + '" fill-opacity="' +
        (hit && !found ? 0.25 : 0.9) + '"' + (found || sel ? ' stroke="' + (sel ? '#111' : '#e4007c') +
        '" stroke-width="2.5"' : '') + (d.group || d.run >= 0 ? ' stroke-dasharray="' + (found || sel ? '6 2' :
        '') + '"' : '') + '/>' + (d.group || d.run >= 0 ? '<text x="' + (b.w - 10) + '" y="13" font-size="11" ' +
        'fill="#223">' + (d.run >= 0 ? '⧉' : '+') + '</text>' : ''));
      var y0 = d.lines.length > 1 ? 14 : 21;
      d.lines.forEach(function (s, k) {
        parts.push('<text x="' + b.w / 2 + '" y="' + (y0 + 13 * k) + '" text-anchor="middle" font-size="11" ' +
          'fill="#111">' + esc(s) + '</text>');
      });
      parts.push('<title>' + esc(d.title) + (d.run >= 0 ? '\nclick: unfold the run' : d.group ? '\nclick: expand' :
        '') + '</title></g>');
    });
    this.vp.innerHTML = parts.join('');
    this.svg.setAttribute('width', lay.width + 2 * MARGIN);
    this.svg.setAttribute('height', lay.height + 2 * MARGIN);
    this.el.dataset.nodes = String(lay.boxes.length);
    this.el.dataset.edges = String(lay.paths.length + lay.stubs.length);
    this.el.dataset.stubs = String(lay.stubs.length);
    this.status.textContent = lay.boxes.length + ' nodes';
    if (fit) this.fit(); else this.apply();
  };

  // does node d hold a match (its own path, or a module inside a group it draws)
  Explorer.prototype.holds = function (d, hit) {
    if (hit[d.key]) return true;
    if (d.kind !== 'm' || !(d.group || d.run >= 0)) return !!hit[d.path];
    for (var p in hit) if (under(p, d.path)) return true;
    return false;
  };

  Explorer.prototype.apply = function () {
    var v = this.view;
    this.svg.style.transform = 'translate(' + v.x + 'px,' + v.y + 'px) scale(' + v.k + ')';
    this.el.dataset.zoom = String(v.k);
  };
  Explorer.prototype.zoomAt = function (px, py, factor) {
    var v = this.view, k = Math.max(0.02, Math.min(8, v.k * factor));
    v.x = px - (px - v.x) * (k / v.k); v.y = py - (py - v.y) * (k / v.k); v.k = k;
    this.apply();
  };
  // centre the view on the node drawn for key (or holding that path)
  Explorer.prototype.reveal = function (key) {
    var lay = this.lay, r = this.pane.getBoundingClientRect(), v = this.view, self = this, b = null;
    lay.boxes.forEach(function (x) { if (!b && (x.d.key === key || self.holds(x.d, makeSet(key)))) b = x; });
    if (!b) return false;
    var covered = this.panel.style.display === 'none' ? 0 : this.panel.getBoundingClientRect().width + 8;
    v.x = ((r.width || 800) - covered) / 2 - (MARGIN + b.x + b.w / 2) * v.k;
    v.y = (r.height || 600) / 2 - (MARGIN + b.y + b.h / 2) * v.k;
    this.apply();
    return true;
  };
  function makeSet(k) { var o = {}; o[k] = 1; return o; }
  Explorer.prototype.panBy = function (dx, dy) { this.view.x += dx; this.view.y += dy; this.apply(); };
  Explorer.prototype.fit = function () {
    var r = this.pane.getBoundingClientRect(), w = r.width || 800, h = r.height || 600, lay = this.lay;
    this.fitted = r.width > 0;  // mounted before it is shown: fit again once it has a size
    var k = Math.min((w - 40) / Math.max(lay.width, 1), (h - 60) / Math.max(lay.height, 1), 1.5);
    // a tall graph (ResNet-50 at full depth) keeps readable boxes: fit its width, start at the top
    k = Math.max(k, Math.min(0.75, (w - 40) / Math.max(lay.width, 1)));
    this.view = { k: k, x: (w - lay.width * k) / 2 - MARGIN * k, y: 44 - MARGIN * k };
    this.apply();
  };

  // ---- the state ----
  Explorer.prototype.expand = function (path) { if (this.data.m[path]) { this.expanded[path] = 1; this.redraw(); } };
  Explorer.prototype.collapse = function (path) {
    var self = this;
    if (!path) return;
    Object.keys(this.expanded).forEach(function (p) { if (under(p, path)) delete self.expanded[p]; });
    this.redraw();
  };
  Explorer.prototype.fold = function (i) { this.folded[i] = 1; this.redraw(); };
  Explorer.prototype.unfold = function (i) { delete this.folded[i]; this.redraw(); };
  // everything open and unfolded: every leaf module call and op
  Explorer.prototype.all = function () {
    var self = this;
    Object.keys(this.data.m).forEach(function (p) { if (self.data.m[p].g) self.expanded[p] = 1; });
    this.folded = {};
    this.redraw(true);
  };
  Explorer.prototype.reset = function () {
    var self = this;
    this.expanded = {}; this.folded = {}; this.matches = null; this.selected = null;
    this.data.init.x.forEach(function (p) { self.expanded[p] = 1; });
    this.data.init.f.forEach(function (i) { self.folded[i] = 1; });
    this.panel.style.display = 'none';
    this.redraw(true);
  };

  // text (case-insensitive) or /regex/: matching modules and ops get outlined, the groups and runs holding them open
  Explorer.prototype.search = function (query) {
    var self = this, test, hit = {}, count = 0;
    query = (query || '').trim();
    if (!query) { this.matches = null; this.redraw(); return 0; }
    var re = /^\/(.*)\/([a-z]*)$/.exec(query);
    try {
      test = re ? new RegExp(re[1], re[2].replace(/[gy]/g, '') || 'i') : null;  // no lastIndex state
    } catch (err) { this.status.textContent = 'bad regex: ' + err.message; return 0; }
    var low = query.toLowerCase();
    function match(s) { return test ? test.test(s) : s.toLowerCase().indexOf(low) >= 0; }
    Object.keys(this.data.m).forEach(function (p) { if (p && match(p)) { hit[p] = 1; count++; } });
    this.data.n.forEach(function (n) {
      if (n[1] === 'p' && match(n[2])) { hit[n[2] + '#' + n[0]] = 1; count++; }
    });
    var opened = 0;
    Object.keys(hit).forEach(function (p) {
      if (opened > 64) return;  // thousands of matches: outline, do not open everything
      var op = p.indexOf('#') >= 0, where = op ? self.nodes[Number(p.split('#')[1])][3] : p;
      self.open(op ? where : parentOf(p));
      opened++;
      self.runs.forEach(function (r, i) {  // a match in a folded-away block unfolds its run
        for (var b = 1; self.folded[i] && b < r.blocks.length; b++) if (under(where, r.blocks[b])) delete self.folded[i];
      });
    });
    this.matches = hit;
    this.redraw();
    var first = Object.keys(hit)[0];
    if (first) this.reveal(first);
    this.status.textContent = count + ' match' + (count === 1 ? '' : 'es') + ', ' + this.lay.boxes.length + ' nodes';
    return count;
  };
  Explorer.prototype.open = function (path) {
    for (var p = path; p; p = parentOf(p)) if (this.data.m[p] && this.data.m[p].g) this.expanded[p] = 1;
  };

  // the side panel: what the node is, the spec's numbers for it; the page highlights it everywhere
  Explorer.prototype.select = function (d) {
    if (typeof d === 'string') {
      var self = this, want = d;
      d = null;
      this.lay.info.forEach(function (x) { if (x.key === want || x.path === want && !d) d = x; });
      if (!d) return false;
    }
    this.selected = d.key;
    var m = this.data.m[d.path] || {}, rows = [['path', d.shown || d.path || d.key], ['type', d.type]];
    if (d.kind === 'm') {
      rows.push(['input', shape(m.i)], ['output', shape(m.o)]);
      rows.push(['params', (m.p || 0).toLocaleString('en-US') + (d.times > 1 ? ' × ' + d.times : '')]);
      if (m.c > 1) rows.push(['calls', String(m.c)]);
    } else {
      rows.push(['output', shape(d.shape)]);
      if (d.kind === 'p') rows.push(['in', d.path || '(model)']);
    }
    var html = '<div style="display:flex;justify-content:space-between"><b>' + esc(d.type) + '</b>' +
      '<button class="ng-close" type="button">×</button></div><table class="ng-info" style="border-collapse:' +
      'collapse;margin:6px 0">' + rows.map(function (r) {
        return '<tr><th style="text-align:left;padding:2px 8px 2px 0;vertical-align:top">' + r[0] + '</th><td ' +
          'class="ng-' + r[0] + '" style="word-break:break-all" data-value="' + esc(r[1]) + '">' + esc(r[1]) +
          '</td></tr>';
      }).join('') + '</table>';
    var api = window.nnspec;
    if (d.path && api && typeof api.layerNumbers === 'function') {
      var got = [];
      try { got = api.layerNumbers(d.path) || []; } catch (err) { got = []; }
      got.forEach(function (g) {
        html += '<div style="margin-top:6px"><b>' + esc(g.view) + '</b><table style="border-collapse:collapse">' +
          Object.keys(g.values || {}).map(function (k) {
            var v = g.values[k];
            return '<tr><th style="text-align:left;padding:1px 8px 1px 0">' + esc(k) + '</th><td>' +
              esc(typeof v === 'number' ? Number(v.toPrecision(4)) : v) + '</td></tr>';
          }).join('') + '</table></div>';
      });
    }
    if (d.path && parentOf(d.path) && this.expanded[parentOf(d.path)]) {
      html += '<button class="ng-up" type="button" style="margin-top:8px">collapse ' +
        esc(this.display(parentOf(d.path)).path) + '</button>';
    }
    var me = this;
    Object.keys(this.folded).forEach(function (i) {  // the runs this node is folded into
      var b = me.runs[i].blocks;
      if (d.path && under(d.path, b[0])) {
        html += '<button class="ng-unfold" data-run="' + i + '" type="button" style="margin:8px 6px 0 0">unfold ' +
          esc(me.display(b[0]).path) + '</button>';
      }
    });
    this.panel.innerHTML = html;
    this.panel.style.display = 'block';
    var self2 = this;
    this.panel.querySelector('.ng-close').addEventListener('click', function () {
      self2.panel.style.display = 'none'; self2.selected = null; self2.redraw();
    });
    this.panel.querySelectorAll('.ng-unfold').forEach(function (b) {
      b.addEventListener('click', function () { self2.unfold(Number(b.getAttribute('data-run'))); });
    });
    var up = this.panel.querySelector('.ng-up');
    if (up) up.addEventListener('click', function () { self2.collapse(parentOf(d.path)); });
    if (d.path && api && typeof api.pick === 'function') { try { api.pick(d.path); } catch (err) { /* page */ } }
    this.redraw();
    var box = this.vp.querySelector('[data-i="' + this.lay.info.indexOf(this.lay.info.filter(function (x) {
      return x.key === d.key; })[0]) + '"]');
    if (box && box.getBoundingClientRect().right > this.panel.getBoundingClientRect().left) this.reveal(d.key);
    return true;
  };

  // the page picked a layer elsewhere (a table row, another chart): outline the node that draws it
  Explorer.prototype.highlight = function (path) {
    this.marked = path || null;
    this.redraw();
    if (path) this.reveal(path);
  };

  Explorer.prototype.state = function () {
    return { expanded: Object.keys(this.expanded).sort(), folded: Object.keys(this.folded).map(Number).sort(),
      nodes: this.lay.boxes.length, keys: this.lay.info.map(function (d) { return d.key; }) };
  };

  window.nnspecGraph = {
    mount: function (el, payload, options) {
      var x = new Explorer(el, payload, options);
      el.nnspecGraph = x;
      return x;
    }
  };
})();
