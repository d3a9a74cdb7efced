// talmts view: draws the index, video and diagnosis pages from the JSON embedded in each page (no network, no
// library). The page's data names its kind: DATA.page is "index", "video" or "diagnosis".
'use strict';

const DATA = JSON.parse(document.getElementById('talmts-data').textContent);
const SVGNS = 'http://www.w3.org/2000/svg';
// DETAD's palette, one colour per detection type
const TYPES = ['true positive', 'double detection', 'wrong label', 'localization', 'confusion', 'background'];
const TYPE_COLOR = {
  'true positive': '#33a02c', 'double detection': '#b2df8a', 'wrong label': '#1f78b4',
  'localization': '#fb9a99', 'confusion': '#e31a1c', 'background': '#a6cee3',
};
const NO_TYPE_COLOR = '#3b6fd4';  // detections without ground truth to judge them

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v !== null && v !== undefined && v !== false) node.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children) node.append(c);
  return node;
}

function sv(tag, attrs, text) {
  const node = document.createElementNS(SVGNS, tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

// the tooltip is HTML: names from the data go through esc()
const esc = x => String(x).replace(/[&<>"']/g, c => ({'&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;'}[c]));
const pct = x => (x === null || x === undefined ? '–' : (100 * x).toFixed(1));
const sec = x => x.toFixed(2);

function chip(color) { return el('span', {class: 'chip', style: `background:${color}`}); }

function card(title, ...children) {
  const c = el('section', {class: 'card'});
  if (title) c.append(el('h2', {}, title));
  children.forEach(x => c.append(x));
  return c;
}

function stats(items) {
  return el('div', {class: 'stats'}, ...items.map(([value, label]) => el('div', {class: 'stat'},
    el('b', {}, String(value)), el('span', {}, label))));
}

function niceStep(span, target) {
  const raw = span / Math.max(target, 1);
  const mag = Math.pow(10, Math.floor(Math.log10(raw)));
  for (const m of [1, 2, 5, 10]) if (m * mag >= raw) return m * mag;
  return 10 * mag;
}

// ---------------------------------------------------------------------------------------------- index page
// A sortable table of videos. d.columns: [key, label, kind] with kind "link" (the row's href), "text", "int",
// "num1" (one decimal), "pct" (a fraction shown in percent) or "types" ({type: count}, drawn as one bar); d.stats: [value, label] tiles; d.note: a sentence.
function renderIndex(d) {
  const app = document.getElementById('app');
  const top = card(null);
  if (d.stats) top.append(stats(d.stats));
  if (d.note) top.append(el('p', {class: 'note'}, d.note));
  if (d.failed && Object.keys(d.failed).length) {
    top.append(el('h2', {}, `Failed (${Object.keys(d.failed).length})`), el('ul', {id: 'failed'},
      ...Object.entries(d.failed).map(([k, v]) => el('li', {}, el('b', {}, k), ': ', v))));
  }
  app.append(top);
  const table = el('table', {class: 'data', id: 'videos'});
  const head = el('tr');
  const body = el('tbody');
  table.append(el('thead', {}, head), body);
  const left = kind => kind === 'link' || kind === 'text' || kind === 'types';
  const fpTotal = c => TYPES.slice(1).reduce((a, t) => a + ((c || {})[t] || 0), 0);
  const typesMax = Math.max(1, ...d.columns.filter(c => c[2] === 'types').flatMap(([k]) => d.rows.map(r => fpTotal(r[k]))));
  let sortKey = null;
  let sortDir = 1;
  for (const [key, label, kind] of d.columns) {
    const th = el('th', {class: `sortable${left(kind) ? ' l' : ''}`, 'data-key': key}, label, el('span', {class: 'arrow'}));
    th.addEventListener('click', () => {
      sortDir = sortKey === key ? -sortDir : (left(kind) ? 1 : -1);  // numbers start from the largest
      sortKey = key;
      fill();
    });
    head.append(th);
  }
  const cell = (row, key, kind) => {
    const v = row[key];
    if (kind === 'link') return el('td', {class: 'l'}, el('a', {href: row.href}, String(v)));
    if (kind === 'types') return el('td', {class: 'l'}, typeBar(v || {}, typesMax));
    if (v === null || v === undefined) return el('td', {class: left(kind) ? 'l' : ''}, '–');
    if (kind === 'pct') return el('td', {}, pct(v));
    if (kind === 'num1') return el('td', {}, v.toFixed(1));
    return el('td', {class: left(kind) ? 'l' : ''}, String(v));
  };
  const sortValue = v => (v && typeof v === 'object' ? Object.values(v).reduce((a, b) => a + b, 0) : v);
  function fill() {
    const rows = d.rows.slice();
    if (sortKey) {
      rows.sort((a, b) => {
        const x = sortValue(a[sortKey]), y = sortValue(b[sortKey]);
        if (x === null || x === undefined) return 1;  // unknowns last, whichever the direction
        if (y === null || y === undefined) return -1;
        return (typeof x === 'string' ? x.localeCompare(y) : x - y) * sortDir;
      });
    }
    head.querySelectorAll('th').forEach(th => {
      th.querySelector('.arrow').textContent = th.dataset.key === sortKey ? (sortDir > 0 ? '▲' : '▼') : '';
    });
    body.replaceChildren(...rows.map(r => el('tr', {'data-video': r.video},
      ...d.columns.map(([key, , kind]) => cell(r, key, kind)))));
  }
  fill();
  app.append(card(`Videos (${d.rows.length})`, el('div', {class: 'scroll'}, table)));
}

// A video's false positives as one stacked bar, a segment per type, ``scale`` false positives filling the bar;
// the counts on hover.
function typeBar(counts, scale) {
  const total = TYPES.slice(1).reduce((a, t) => a + (counts[t] || 0), 0);
  const w = 160, h = 12;
  const bar = sv('svg', {width: w, height: h, class: 'types'});
  bar.append(sv('rect', {x: 0, y: 0, width: w, height: h, fill: '#eef1f6'}));
  let x = 0;
  for (const t of TYPES.slice(1)) {
    const n = counts[t] || 0;
    if (!n) continue;
    const part = (w * n) / scale;
    bar.append(sv('rect', {x, y: 0, width: part, height: h, fill: TYPE_COLOR[t], 'data-type': t}));
    x += part;
  }
  bar.append(sv('title', {}, total ? TYPES.slice(1).filter(t => counts[t]).map(t => `${t}: ${counts[t]}`).join(', ')
    : 'no false positives'));
  return bar;
}

// ---------------------------------------------------------------------------------------------- video page
function renderVideo(d) {
  const app = document.getElementById('app');
  const judged = d.detections.some(x => x.type);
  let video = null;
  let clock = 0;  // the playhead when there is no video
  let threshold = d.min_score;
  let picked = null;

  const slider = el('input', {type: 'range', id: 'threshold', min: 0, max: 1, step: 0.01, value: threshold,
    'aria-label': 'score threshold'});
  const shown = el('span', {id: 'shown', class: 'muted'});
  const out = el('output', {id: 'threshold-value'}, threshold.toFixed(2));
  const box = el('div', {id: 'timeline'});
  const tip = el('div', {class: 'tip', id: 'tip', hidden: true});
  box.append(tip);

  const top = el('div', {class: 'player'});
  if (d.src) {
    video = el('video', {controls: true, preload: 'auto', src: d.src});
    if (d.captions) video.append(el('track', {kind: 'captions', label: 'detections', default: true, src: d.captions}));
    top.append(video);
  }
  const g = d.ground_truth;
  const side = el('div');
  const facts = [[d.detections.length, 'detections']];
  if (d.has_ground_truth) {
    facts.push([g.length, 'ground truths'], [g.filter(x => x.matched_by !== null).length, 'found'],
      [d.ap === null ? '–' : pct(d.ap) + ' %', `AP at tIoU ${d.tiou}`]);
  }
  side.append(stats(facts));
  if (d.has_ground_truth && video) {
    side.append(el('table', {class: 'data', id: 'ground-truth'}, el('thead', {}, el('tr', {}, el('th', {}, '#'),
      el('th', {class: 'l'}, 'ground truth'), el('th', {}, 'start (s)'), el('th', {}, 'end (s)'), el('th', {class: 'l'}, 'found'))),
    el('tbody', {}, ...g.map((x, k) => el('tr', {}, el('td', {}, String(k + 1)), el('td', {class: 'l'}, x.label),
      el('td', {}, sec(x.start)), el('td', {}, sec(x.end)),
      el('td', {class: 'l'}, x.matched_by === null ? el('span', {class: 'muted'}, 'missed') : `score ${d.detections[x.matched_by].score.toFixed(2)}`))))));
  }
  if (d.notes && Object.keys(d.notes).length) {
    const dl = el('dl', {class: 'notes'});
    for (const [k, v] of Object.entries(d.notes)) dl.append(el('dt', {}, k), el('dd', {}, String(v)));
    side.append(dl);
  }
  top.append(side);
  app.append(card(null, top));

  const legend = el('div', {class: 'legend'});
  if (d.has_ground_truth) {
    legend.append(el('span', {}, chip('#4d4d4d'), 'ground truth, found'),
      el('span', {}, el('span', {class: 'chip', style: 'background:#fff;border:1px dashed #4d4d4d'}), 'ground truth, missed'));
    for (const t of TYPES) legend.append(el('span', {}, chip(TYPE_COLOR[t]), t));
  } else {
    legend.append(el('span', {}, chip(NO_TYPE_COLOR), 'detection (its score written in the bar)'));
  }
  app.append(card('Timeline', el('div', {class: 'controls'},
    el('label', {for: 'threshold'}, 'score ≥'), slider, out, shown), box, legend,
  el('p', {class: 'note'}, 'One lane per class: ground truth on top, detections below. Click to seek; hover for details.')));

  const cols = ['#', 'label', 'start (s)', 'end (s)', 'score'].concat(judged ? ['result', 'ground truth'] : []);
  const tbody = el('tbody');
  const table = el('table', {class: 'data', id: 'detections'},
    el('thead', {}, el('tr', {}, ...cols.map((c, i) => el('th', {class: i === 1 || i === 5 || i === 6 ? 'l' : ''}, c)))), tbody);
  const tableCard = card('Detections', el('div', {class: 'scroll'}, table));
  app.append(tableCard);

  const byScore = d.detections.map((x, i) => Object.assign({id: i}, x)).sort((a, b) => b.score - a.score);
  byScore.forEach((x, r) => { x.rank = r + 1; });

  const duration = () => {
    if (d.duration) return d.duration;
    if (video && isFinite(video.duration) && video.duration > 0) return video.duration;
    return Math.max(1, ...d.detections.map(x => x.end), ...g.map(x => x.end));
  };
  const now = () => (video ? video.currentTime : clock);

  function seek(t) {
    if (video) {
      video.currentTime = t;
      video.play().catch(() => {});  // autoplay may be refused; the seek stands
    } else {
      clock = t;
      movePlayhead();
    }
  }

  function gtText(k) {
    const x = g[k];
    return `ground truth #${k + 1} ${esc(x.label)} ${sec(x.start)}–${sec(x.end)} s`;
  }

  function describe(x) {
    const lines = [`<b>${esc(x.label)}</b> ${sec(x.start)}–${sec(x.end)} s, score ${x.score.toFixed(3)} (#${x.rank})`];
    if (x.type) lines.push(`<span style="color:${TYPE_COLOR[x.type]}">■</span> ${x.type}`);
    if (x.matched !== null && x.matched !== undefined) {
      lines.push(`matches ${gtText(x.matched)}, tIoU ${x.matched_tiou.toFixed(2)}`);
    } else if (x.best !== null && x.best !== undefined) {
      lines.push(`closest: ${gtText(x.best)}, tIoU ${x.best_tiou.toFixed(2)}`);
    }
    return lines.join('<br>');
  }

  function describeGt(k) {
    const x = g[k];
    const by = x.matched_by === null ? 'missed at this tIoU'
      : `found by detection #${byScore.find(y => y.id === x.matched_by).rank} (score ${d.detections[x.matched_by].score.toFixed(3)})`;
    return `<b>${esc(x.label)}</b> ground truth #${k + 1}, ${sec(x.start)}–${sec(x.end)} s<br>${by}`;
  }

  const lanes = () => {
    const names = d.classes.slice();
    return names.filter(c => g.some(x => x.label === c) || byScore.some(x => x.label === c && x.score >= threshold));
  };

  let geometry = null;
  function drawTimeline() {
    const width = Math.max(box.clientWidth, 480);
    const left = 130, right = 14, axis = 26, rowH = 13, gap = 3, lanePad = 8, maxRows = 10;
    const dur = duration();
    const x = t => left + (Math.min(Math.max(t, 0), dur) / dur) * (width - left - right);
    const visible = byScore.filter(v => v.score >= threshold);
    const svg = sv('svg', {width, id: 'timeline-svg'});
    const layers = [];
    let y = axis;
    for (const [i, name] of lanes().entries()) {
      const top0 = y;
      const rows = [];  // end time of the last bar in each packed row
      const place = [];
      for (const v of visible.filter(v => v.label === name).sort((a, b) => a.start - b.start)) {
        let r = rows.findIndex(end => end <= v.start);
        if (r < 0) {
          r = rows.length < maxRows ? rows.length : rows.length - 1;
          if (r === rows.length) rows.push(0);
        }
        rows[r] = Math.max(rows[r], v.end);
        place.push([v, r]);
      }
      const gtRows = d.has_ground_truth ? 1 : 0;
      const height = lanePad + (gtRows + Math.max(rows.length, 1)) * (rowH + gap) + lanePad - gap;
      layers.push(sv('rect', {x: 0, y: top0, width, height, fill: i % 2 ? '#ffffff' : '#f5f7fb', class: 'lane',
        'data-label': name}));
      layers.push(sv('text', {x: 8, y: top0 + height / 2 + 4, class: 'lane-label', 'font-size': 12, fill: '#1d2330'},
        name.length > 18 ? name.slice(0, 17) + '…' : name));
      let rowY = top0 + lanePad;
      if (gtRows) {
        g.forEach((s, k) => {
          if (s.label !== name) return;
          const found = s.matched_by !== null;
          layers.push(sv('rect', {x: x(s.start), y: rowY, width: Math.max(x(s.end) - x(s.start), 2), height: rowH, rx: 2,
            class: 'gt', 'data-gt': k, fill: found ? '#4d4d4d' : '#ffffff', stroke: '#4d4d4d',
            'stroke-dasharray': found ? '' : '3 2'}));
        });
        rowY += rowH + gap;
      }
      for (const [v, r] of place) {
        // solid colours keep the types apart; the score is written in the bar when it fits
        const color = v.type ? TYPE_COLOR[v.type] : NO_TYPE_COLOR;
        const bw = Math.max(x(v.end) - x(v.start), 2);
        const by = rowY + r * (rowH + gap);
        layers.push(sv('rect', {x: x(v.start), y: by, width: bw, height: rowH, rx: 2, fill: color, 'data-id': v.id,
          class: 'det' + (picked === v.id ? ' picked' : '')}));
        if (bw > 36) {
          const dark = ['wrong label', 'confusion', 'true positive'].includes(v.type) || !v.type;
          layers.push(sv('text', {x: x(v.start) + 4, y: by + rowH - 3, 'font-size': 10, 'pointer-events': 'none',
            fill: dark ? '#fff' : '#1d2330'}, v.score.toFixed(2)));
        }
      }
      y = top0 + height;
    }
    const h = Math.max(y, axis + 30) + 4;
    svg.setAttribute('height', h);
    // time axis with round ticks
    const step = niceStep(dur, Math.max(2, Math.floor((width - left) / 90)));
    svg.append(sv('line', {x1: left, x2: width - right, y1: axis - 6, y2: axis - 6, stroke: '#9aa3b2'}));
    for (let t = 0; t <= dur + 1e-9; t += step) {
      svg.append(sv('line', {x1: x(t), x2: x(t), y1: axis - 10, y2: h, stroke: '#e3e7ee'}));
      svg.append(sv('text', {x: x(t), y: axis - 12, 'text-anchor': 'middle', 'font-size': 11, fill: '#5b6475'},
        `${+t.toFixed(2)} s`));
    }
    layers.forEach(n => svg.append(n));
    svg.append(sv('line', {id: 'playhead', x1: x(now()), x2: x(now()), y1: axis - 8, y2: h, stroke: '#d62728',
      'stroke-width': 2, 'pointer-events': 'none'}));
    box.replaceChildren(svg, tip);
    geometry = {x, left, right, width, dur};
    shown.textContent = `${visible.length} of ${d.detections.length} detections shown` + (judged
      ? ` (${visible.filter(v => v.type === 'true positive').length} true, ${visible.filter(v => v.type && v.type !== 'true positive').length} false positives)` : '');
  }

  function drawTable() {
    tbody.replaceChildren(...byScore.filter(v => v.score >= threshold).map(v => {
      const cells = [el('td', {}, String(v.rank)), el('td', {class: 'l'}, v.label), el('td', {}, sec(v.start)),
        el('td', {}, sec(v.end)), el('td', {}, v.score.toFixed(3))];
      if (judged) {
        cells.push(el('td', {class: 'l'}, chip(TYPE_COLOR[v.type] || '#ccc'), v.type || ''));
        const k = v.matched !== null && v.matched !== undefined ? v.matched : null;
        const b = v.best !== null && v.best !== undefined ? v.best : null;
        cells.push(el('td', {class: 'l'}, k !== null ? `#${k + 1} ${g[k].label} ${sec(g[k].start)}–${sec(g[k].end)} s`
          : b !== null ? el('span', {class: 'muted'}, `closest #${b + 1} ${g[b].label}, tIoU ${v.best_tiou.toFixed(2)}`) : ''));
      }
      const tr = el('tr', {'data-id': v.id, 'data-start': v.start, 'data-end': v.end,
        class: picked === v.id ? 'picked' : null}, ...cells);
      tr.addEventListener('click', () => pick(v.id, true));
      return tr;
    }));
    movePlayhead();
  }

  function pick(id, andSeek) {
    picked = id;
    const v = d.detections[id];
    box.querySelectorAll('rect.det').forEach(r => r.classList.toggle('picked', +r.dataset.id === id));
    tbody.querySelectorAll('tr').forEach(r => r.classList.toggle('picked', +r.dataset.id === id));
    if (andSeek) seek(v.start);
  }

  function movePlayhead() {
    const t = now();
    const line = document.getElementById('playhead');
    if (line && geometry) {
      const px = geometry.x(t);
      line.setAttribute('x1', px);
      line.setAttribute('x2', px);
    }
    tbody.querySelectorAll('tr').forEach(r => r.classList.toggle('now', +r.dataset.start <= t && t < +r.dataset.end));
  }

  box.addEventListener('click', ev => {
    const target = ev.target;
    if (target.classList && target.classList.contains('det')) {
      const id = +target.dataset.id;
      pick(id, true);
      const row = tbody.querySelector(`tr[data-id="${id}"]`);
      if (row) row.scrollIntoView({block: 'nearest'});
    } else if (target.classList && target.classList.contains('gt')) {
      seek(g[+target.dataset.gt].start);
    } else if (geometry) {
      const rect = box.getBoundingClientRect();
      const px = ev.clientX - rect.left;
      if (px >= geometry.left) {
        seek(((px - geometry.left) / (geometry.width - geometry.left - geometry.right)) * geometry.dur);
      }
    }
  });
  box.addEventListener('mousemove', ev => {
    const t = ev.target;
    let html = null;
    if (t.classList && t.classList.contains('det')) html = describe(byScore.find(v => v.id === +t.dataset.id));
    else if (t.classList && t.classList.contains('gt')) html = describeGt(+t.dataset.gt);
    if (!html) { tip.hidden = true; return; }
    const rect = box.getBoundingClientRect();
    tip.innerHTML = html;
    tip.hidden = false;
    const px = ev.clientX - rect.left;
    tip.style.left = `${Math.min(px + 14, rect.width - 330)}px`;
    tip.style.top = `${ev.clientY - rect.top + 16}px`;
  });
  box.addEventListener('mouseleave', () => { tip.hidden = true; });

  slider.addEventListener('input', () => {
    threshold = +slider.value;
    out.textContent = threshold.toFixed(2);
    drawTimeline();
    drawTable();
  });

  if (video) {
    let raf = null;
    const loop = () => { movePlayhead(); raf = video.paused ? null : requestAnimationFrame(loop); };
    video.addEventListener('play', () => { if (!raf) raf = requestAnimationFrame(loop); });
    for (const e of ['timeupdate', 'seeked', 'pause']) video.addEventListener(e, movePlayhead);
    video.addEventListener('loadedmetadata', () => { if (!d.duration) drawTimeline(); });
  }
  window.addEventListener('resize', drawTimeline);
  drawTimeline();
  drawTable();
  window.talmtsView = {seek, now, redraw: drawTimeline, geometry: () => geometry};  // for tests and the console
}

// ---------------------------------------------------------------------------------------------- charts
// Vertical bars: categories on x; one series, or several stacked. Values are fractions shown in percent.
function barChart({title, categories, series, stacked, yMax, labels, baseline, width = 520, height = 280, id}) {
  const m = {l: 44, r: 12, t: 28, b: 48};
  const svg = sv('svg', {class: 'chart', width: '100%', viewBox: `0 0 ${width} ${height}`, id});
  svg.append(sv('text', {x: m.l, y: 16, class: 'title'}, title));
  const W = width - m.l - m.r, H = height - m.t - m.b;
  const top = yMax || Math.max(0.01, ...series.flatMap(s => s.values.map(v => v || 0)), baseline || 0) * 1.2;
  const y = v => m.t + H - (v / top) * H;
  const step = niceStep(100 * top, 5) / 100;
  for (let v = 0; v <= top + 1e-9; v += step) {
    svg.append(sv('line', {x1: m.l, x2: m.l + W, y1: y(v), y2: y(v), class: 'grid'}));
    svg.append(sv('text', {x: m.l - 6, y: y(v) + 4, 'text-anchor': 'end'}, `${+(100 * v).toFixed(1)}`));
  }
  const slot = W / categories.length;
  const bw = stacked || series.length === 1 ? slot * 0.66 : (slot * 0.8) / series.length;
  categories.forEach((c, i) => {
    let acc = 0;
    series.forEach((s, j) => {
      const v = s.values[i];
      if (v === null || v === undefined) {
        if (!stacked) svg.append(sv('text', {x: m.l + slot * i + slot / 2, y: y(0) - 4, 'text-anchor': 'middle',
          fill: '#999'}, '–'));
        return;
      }
      const x0 = m.l + slot * i + (stacked || series.length === 1 ? (slot - bw) / 2 : slot * 0.1 + j * bw);
      const y0 = y(acc + v);
      const rect = sv('rect', {x: x0, y: y0, width: bw, height: Math.max(y(acc) - y0, 0), fill: s.color,
        class: 'bar', 'data-series': s.name, 'data-category': c});
      rect.append(sv('title', {}, `${s.name} ${c}: ${pct(v)} %`));
      svg.append(rect);
      if (labels && !stacked) svg.append(sv('text', {x: x0 + bw / 2, y: y0 - 4, 'text-anchor': 'middle'}, pct(v)));
      if (stacked) acc += v;
    });
    svg.append(sv('text', {x: m.l + slot * i + slot / 2, y: m.t + H + 16, 'text-anchor': 'middle'}, c));
  });
  if (baseline !== undefined) {
    svg.append(sv('line', {x1: m.l, x2: m.l + W, y1: y(baseline), y2: y(baseline), stroke: '#222',
      'stroke-dasharray': '5 4'}));
  }
  svg.append(sv('line', {x1: m.l, x2: m.l, y1: m.t, y2: m.t + H, stroke: '#9aa3b2'}));
  return svg;
}

function hbarChart({title, names, values, width = 520, id}) {
  const rowH = 20, m = {l: 150, r: 50, t: title ? 28 : 4, b: 6};
  const height = m.t + m.b + rowH * names.length;
  const svg = sv('svg', {class: 'chart', width: Math.min(width, 900), height, viewBox: `0 0 ${width} ${height}`, id});
  if (title) svg.append(sv('text', {x: 8, y: 16, class: 'title'}, title));
  const W = width - m.l - m.r;
  names.forEach((n, i) => {
    const yy = m.t + i * rowH;
    svg.append(sv('text', {x: m.l - 8, y: yy + 14, 'text-anchor': 'end'}, n.length > 22 ? n.slice(0, 21) + '…' : n));
    svg.append(sv('rect', {x: m.l, y: yy + 3, width: W, height: rowH - 6, fill: '#eef1f6'}));
    svg.append(sv('rect', {x: m.l, y: yy + 3, width: Math.max(W * values[i], 0), height: rowH - 6, fill: '#2458c6',
      class: 'bar'}));
    svg.append(sv('text', {x: m.l + W + 6, y: yy + 14}, pct(values[i])));
  });
  return svg;
}

// ---------------------------------------------------------------------------------------------- diagnosis page
function renderDiagnosis(d) {
  const app = document.getElementById('app');
  const x = d.diagnosis;
  const n = Object.values(x.error_counts).reduce((a, c) => a + c[0], 0);
  app.append(card(null, stats([
    [pct(x.average_mAP) + ' %', `mAP at tIoU ${x.tiou.join(', ')}`], [n, 'detections'],
    [pct(x.error_counts['true positive'][0] / Math.max(n, 1)) + ' %', 'true positives'],
  ])));
  const errors = TYPES.slice(1);
  const groups = x.fp_profile.map(r => r.group);
  const profile = barChart({title: 'False-positive profile of the top detections (%)', categories: groups, stacked: true,
    yMax: 1, id: 'chart-profile',
    series: TYPES.map(t => ({name: t, color: TYPE_COLOR[t], values: x.fp_profile.map(r => r[t])}))});
  const gains = barChart({title: 'mAP gain if each error type were removed (points)', categories: errors.map(e => e.replace(' ', '\u00a0')),
    labels: true, id: 'chart-gain',
    series: [{name: 'gain', color: '#1f78b4', values: errors.map(e => Math.max(x.map_gain[e], 0))}]});
  // one colour per bar: the type's
  gains.querySelectorAll('rect.bar').forEach((r, i) => r.setAttribute('fill', TYPE_COLOR[errors[i]]));
  const legend = el('div', {class: 'legend'}, ...TYPES.map(t => el('span', {}, chip(TYPE_COLOR[t]), t)));
  app.append(card('False positives', el('div', {class: 'charts'}, el('div', {}, profile), el('div', {}, gains)), legend,
    el('p', {class: 'note'}, `Per class with G ground truths, "1G" holds its G best-scored detections, "2G" the next G,
      and so on. A gain is the average mAP with that type's detections removed minus the average mAP.`)));

  const sens = x.sensitivity;
  const sensTitle = {length: 'length (s)', coverage: 'coverage of its video', instances: 'instances of its class per video'};
  const sensCharts = ['length', 'coverage', 'instances'].filter(k => sens[k]).map(k => barChart({
    title: sensTitle[k], categories: sens[k].bins.map((b, i) => `${b} (${sens[k].instances[i]})`), labels: true,
    baseline: sens.base, id: `chart-${k}`, width: 360, height: 250, yMax: 1,
    series: [{name: k, color: {length: '#f0027f', coverage: '#386cb0', instances: '#bf5b17'}[k], values: sens[k].average_mAP_N}]}));
  app.append(card('Sensitivity to the instances\' characteristics: average-mAP_N (%)',
    el('div', {class: 'charts three'}, ...sensCharts),
    el('p', {class: 'note'}, `DETAD's normalized AP of the instances in each bin (in brackets, how many instances it
      holds); dashed line: all instances, ${pct(sens.base)} %. Bins: ${d.bins_text}.`)));

  const classes = Object.entries(x.per_class).map(([c, v]) => [c, v.reduce((a, b) => a + b, 0) / v.length])
    .sort((a, b) => b[1] - a[1]);
  app.append(card('AP per class (%)', hbarChart({title: '', names: classes.map(c => c[0]), values: classes.map(c => c[1]),
    id: 'chart-classes', width: 640}), el('p', {class: 'note'}, 'Averaged over the tIoU thresholds.')));

  const rows = TYPES.map(t => el('tr', {}, el('td', {class: 'l'}, chip(TYPE_COLOR[t]), t),
    ...x.tiou.map((_, i) => el('td', {}, String(x.error_counts[t][i]))),
    el('td', {}, t === 'true positive' ? '' : (100 * x.map_gain[t]).toFixed(1))));
  app.append(card('Detections by type', el('table', {class: 'data', id: 'types'}, el('thead', {}, el('tr', {},
    el('th', {class: 'l'}, 'type'), ...x.tiou.map(t => el('th', {}, `tIoU ${t}`)), el('th', {}, 'mAP gain (points)'))),
  el('tbody', {}, ...rows))));

  const defs = el('ul', {class: 'defs'}, ...d.definitions.map(([k, v]) => el('li', {}, el('b', {}, k + ': '), v)));
  const pngs = el('p', {class: 'note'}, 'The same plots as pictures for a report: ',
    ...d.pictures.flatMap((p, i) => [i ? ', ' : '', el('a', {href: p}, p)]));
  app.append(card('Definitions (DETAD, Alwassel et al., ECCV 2018)', defs, pngs));
}

({index: renderIndex, video: renderVideo, diagnosis: renderDiagnosis})[DATA.page](DATA);
