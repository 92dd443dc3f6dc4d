/* nnspec serve: keeps a served dashboard current without a reload (never part of a
 * rendered file). Polls /api/state every second; on a new version fetches /api/cards
 * and swaps each <section class="card"> whose HTML changed, keeping the scroll
 * position, then embeds its charts with the page's window.nnspec.mount. A spec
 * that fails shows its located error in a banner above the last good charts. */
(function () {
  'use strict';
  var boot = window.nnspecLive || { version: 0, cards: {} };
  var version = boot.version;
  var hashes = boot.cards || {};
  var BANNER = 'nnspec-live-banner';

  function banner(text, kind) {
    var b = document.getElementById(BANNER);
    if (!text) {
      if (b) b.remove();
      return;
    }
    if (!b) {
      b = document.createElement('div');
      b.id = BANNER;
      b.setAttribute('role', 'alert');
      // fixed, full width: whatever layout the page's body has (a grid with a sidebar)
      b.style.cssText =
        'position:fixed;top:0;left:0;right:0;z-index:1000;margin:0;padding:10px 28px;white-space:pre-wrap;' +
        'max-height:40vh;overflow:auto;box-shadow:0 2px 8px rgba(0,0,0,.2);' +
        'font:12px ui-monospace,monospace;background:#fdecea;color:#a12622;border-bottom:1px solid #d9534f';
      document.body.insertBefore(b, document.body.firstChild);
    }
    b.dataset.kind = kind;
    if (b.textContent !== text) b.textContent = text;
  }

  function embed(root) {  // the page's own script (page.js, inlined in every page) embeds and wires charts
    window.nnspec.mount(root);
  }

  function fragment(html) {
    var t = document.createElement('template');
    t.innerHTML = html;
    return t.content;
  }

  function swap(data) {
    var main = document.querySelector('main');
    if (!main) { location.reload(); return; }
    var x = window.scrollX, y = window.scrollY;
    var ids = data.cards.map(function (c) { return c.id; });
    var had = Object.keys(hashes);
    var same = ids.length === had.length && ids.every(function (id, i) {
      return had[i] === id && document.getElementById(id);
    });
    if (same) {
      data.cards.forEach(function (c) {
        if (hashes[c.id] === c.hash) return;
        var old = document.getElementById(c.id);
        var fresh = fragment(c.html).firstElementChild;
        if (!old || !fresh) return;
        old.replaceWith(fresh);
        embed(fresh);
      });
    } else {  // cards came or went: the whole of <main> again
      main.replaceChildren(fragment(data.main));
      embed(main);
    }
    hashes = {};
    data.cards.forEach(function (c) { hashes[c.id] = c.hash; });
    version = data.version;
    document.documentElement.dataset.liveVersion = String(version);
    window.scrollTo(x, y);
  }

  function poll() {
    fetch('/api/state', { cache: 'no-store' })
      .then(function (r) { return r.json(); })
      .then(function (s) {
        banner(s.error ? s.error + '\n(showing the last good charts; fix the spec and they update)' : null, 'error');
        if (s.version === version) return null;
        if (version === 0) { location.reload(); return null; }
        return fetch('/api/cards', { cache: 'no-store' })
          .then(function (r) { return r.json(); })
          .then(swap);
      })
      .catch(function () {
        banner('lost nnspec serve at ' + location.host + ': these are the last charts it sent', 'lost');
      })
      .then(function () { setTimeout(poll, 1000); });
  }

  document.documentElement.dataset.liveVersion = String(version);
  setTimeout(poll, 1000);
})();
