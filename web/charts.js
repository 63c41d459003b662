// Time-series charts drawn on <canvas>: a sliding window of the last minutes, nice y ticks,
// filled areas, and a hover read-out. No library.

import { fmtClock } from './ui.js';

const FONT = '11px system-ui, -apple-system, "Segoe UI", Roboto, "Noto Sans", "PingFang SC", "Microsoft YaHei", "WenQuanYi Micro Hei", sans-serif';

/** The y scale: a top value and a tick count whose steps are 1, 2 or 5 times a power of ten. */
function niceScale(max) {
  if (!(max > 0)) return { top: 4, ticks: 4 };
  let best = null;
  for (const n of [4, 5, 3]) {
    const raw = max / n;
    const mag = Math.pow(10, Math.floor(Math.log10(raw)));
    const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw - 1e-12);
    const top = step * n;
    if (!best || top < best.top - 1e-12) best = { top, ticks: n };
  }
  return best;
}

function fmtTick(v) {
  if (v >= 1e6) return `${+(v / 1e6).toFixed(1)}M`;
  if (v >= 1e4) return `${+(v / 1e3).toFixed(0)}k`;
  if (v >= 1e3) return `${+(v / 1e3).toFixed(1)}k`;
  if (Number.isInteger(v)) return String(v);
  return String(+v.toFixed(2));
}

export class LineChart {
  /**
   * @param {HTMLElement} host  element the canvas fills
   * @param {{series: {key: string, color: string, label: string}[], windowMs?: number,
   *          height?: number, format?: (v:number)=>string}} opts
   */
  constructor(host, opts) {
    this.host = host;
    this.series = opts.series;
    this.windowMs = opts.windowMs || 5 * 60 * 1000;
    this.height = opts.height || 180;
    this.format = opts.format || fmtTick;
    this.points = [];
    this.hoverX = null;
    this.canvas = document.createElement('canvas');
    this.canvas.className = 'chart-canvas';
    this.canvas.setAttribute('role', 'img');
    this.tip = document.createElement('div');
    this.tip.className = 'chart-tip';
    this.tip.hidden = true;
    host.classList.add('chart');
    host.append(this.canvas, this.tip);
    this.canvas.addEventListener('mousemove', (e) => {
      this.hoverX = e.offsetX;
      this.draw();
    });
    this.canvas.addEventListener('mouseleave', () => {
      this.hoverX = null;
      this.tip.hidden = true;
      this.draw();
    });
    this.resizer = new ResizeObserver(() => this.draw());
    this.resizer.observe(host);
  }

  setLabel(text) {
    this.canvas.setAttribute('aria-label', text);
  }

  /** points: [{t: ms, [key]: number}] oldest first. */
  set(points) {
    this.points = points;
    this.draw();
  }

  destroy() {
    this.resizer.disconnect();
  }

  draw() {
    const w = this.host.clientWidth;
    const hgt = this.height;
    if (!w) return;
    const dpr = window.devicePixelRatio || 1;
    const c = this.canvas;
    if (c.width !== Math.round(w * dpr) || c.height !== Math.round(hgt * dpr)) {
      c.width = Math.round(w * dpr);
      c.height = Math.round(hgt * dpr);
      c.style.width = `${w}px`;
      c.style.height = `${hgt}px`;
    }
    const g = c.getContext('2d');
    g.setTransform(dpr, 0, 0, dpr, 0, 0);
    g.clearRect(0, 0, w, hgt);
    g.font = FONT;

    const now = this.points.length ? Math.max(Date.now(), this.points[this.points.length - 1].t) : Date.now();
    // The window grows with the data up to its size, so a fresh page is not a thin sliver.
    const span = this.points.length ? now - this.points[0].t : 0;
    const win = Math.min(this.windowMs, Math.max(60000, span));
    const t0 = now - win;
    const pts = this.points.filter((p) => p.t >= t0 - 5000);
    let max = 0;
    for (const p of pts) for (const s of this.series) max = Math.max(max, p[s.key] || 0);
    const { top: ymax, ticks } = niceScale(max);
    const tickValues = Array.from({ length: ticks + 1 }, (_, i) => (ymax / ticks) * i);

    const left = Math.max(28, ...tickValues.map((v) => g.measureText(this.format(v)).width + 12));
    const right = 10;
    const top = 10;
    const bottom = 22;
    const pw = w - left - right;
    const ph = hgt - top - bottom;
    const x = (tt) => left + ((tt - t0) / win) * pw;
    const y = (v) => top + ph - (v / ymax) * ph;

    // grid and y labels
    g.strokeStyle = '#eef1f6';
    g.lineWidth = 1;
    g.fillStyle = '#8a94a6';
    g.textAlign = 'right';
    g.textBaseline = 'middle';
    for (const v of tickValues) {
      const yy = Math.round(y(v)) + 0.5;
      g.beginPath();
      g.moveTo(left, yy);
      g.lineTo(w - right, yy);
      g.stroke();
      g.fillText(this.format(v), left - 6, yy);
    }
    // x labels every minute
    g.textAlign = 'center';
    g.textBaseline = 'top';
    const step = win <= 90000 ? 15000 : win <= 180000 ? 30000 : 60000;
    for (let tt = Math.ceil(t0 / step) * step; tt <= now; tt += step) {
      const xx = x(tt);
      if (xx < left + 16 || xx > w - right - 16) continue;
      g.fillText(step < 60000 ? fmtClock(tt) : fmtClock(tt).slice(0, 5), xx, hgt - bottom + 6);
    }

    g.save();
    g.beginPath();
    g.rect(left, top - 2, pw, ph + 4);
    g.clip();
    for (const s of this.series) {
      if (pts.length === 0) continue;
      const line = pts.map((p) => [x(p.t), y(p[s.key] || 0)]);
      // area
      const grad = g.createLinearGradient(0, top, 0, top + ph);
      grad.addColorStop(0, hexA(s.color, 0.22));
      grad.addColorStop(1, hexA(s.color, 0.02));
      g.beginPath();
      g.moveTo(line[0][0], top + ph);
      for (const [px, py] of line) g.lineTo(px, py);
      g.lineTo(line[line.length - 1][0], top + ph);
      g.closePath();
      g.fillStyle = grad;
      g.fill();
      // line
      g.beginPath();
      line.forEach(([px, py], i) => (i ? g.lineTo(px, py) : g.moveTo(px, py)));
      g.strokeStyle = s.color;
      g.lineWidth = 2;
      g.lineJoin = 'round';
      g.stroke();
      // latest value
      const [lx, ly] = line[line.length - 1];
      g.beginPath();
      g.arc(lx, ly, 3, 0, Math.PI * 2);
      g.fillStyle = s.color;
      g.fill();
    }
    g.restore();

    // axis base line
    g.strokeStyle = '#d9dee7';
    g.beginPath();
    g.moveTo(left, Math.round(top + ph) + 0.5);
    g.lineTo(w - right, Math.round(top + ph) + 0.5);
    g.stroke();

    // hover read-out
    if (this.hoverX !== null && pts.length) {
      let best = pts[0];
      for (const p of pts) if (Math.abs(x(p.t) - this.hoverX) < Math.abs(x(best.t) - this.hoverX)) best = p;
      const bx = Math.round(x(best.t)) + 0.5;
      g.strokeStyle = '#c3cad6';
      g.setLineDash([3, 3]);
      g.beginPath();
      g.moveTo(bx, top);
      g.lineTo(bx, top + ph);
      g.stroke();
      g.setLineDash([]);
      this.tip.replaceChildren();
      const head = document.createElement('div');
      head.className = 'chart-tip-time';
      head.textContent = fmtClock(best.t);
      this.tip.append(head);
      for (const s of this.series) {
        const row = document.createElement('div');
        const sw = document.createElement('span');
        sw.className = 'swatch';
        sw.style.background = s.color;
        row.append(sw, `${s.label}: ${this.format(best[s.key] || 0)}`);
        this.tip.append(row);
      }
      this.tip.hidden = false;
      const tipW = this.tip.offsetWidth;
      this.tip.style.left = `${Math.min(w - tipW - 4, Math.max(4, bx + 10))}px`;
      this.tip.style.top = `${top}px`;
    }
  }
}

function hexA(hex, a) {
  const n = parseInt(hex.slice(1), 16);
  return `rgba(${(n >> 16) & 255}, ${(n >> 8) & 255}, ${n & 255}, ${a})`;
}

/** A horizontal stacked bar of parts, as a DOM element (used for state breakdowns). */
export function stackBar(parts) {
  const total = parts.reduce((a, p) => a + p.value, 0);
  const bar = document.createElement('div');
  bar.className = 'stack';
  for (const p of parts) {
    if (!p.value) continue;
    const seg = document.createElement('div');
    seg.className = `stack-seg st-bg-${p.key}`;
    seg.style.width = `${(p.value / total) * 100}%`;
    seg.title = `${p.label}: ${p.value}`;
    bar.append(seg);
  }
  return bar;
}
