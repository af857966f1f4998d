// Segue Studio: the mix viewer. Draws a continuous mix on a canvas from /mixes/{id}/data.json:
// section bands and beat ticks of every song (two lanes, songs alternating), the waveform,
// every song's gain curve (the mix mask) and the seams; a cursor follows playback, a click
// seeks, and each seam can be rated 1 to 5.
"use strict";

(function () {
  const COLORS = ["#3a5bd9", "#e0793a", "#1f8a4c", "#b3261e", "#8e44ad", "#c49a00",
                  "#16a2b8", "#d63384"];
  const LANE_H = 30;      // one lane of section bands with beat ticks below
  const LANE_GAP = 4;
  const WAVE_H = 120;
  const GAIN_H = 84;
  const AXIS_H = 22;
  const GAP = 10;
  const PAD_X = 8;

  function clock(s) {
    const t = Math.max(0, Math.floor(s || 0));
    return `${Math.floor(t / 60)}:${String(t % 60).padStart(2, "0")}`;
  }

  function alpha(hex, a) {
    const n = parseInt(hex.slice(1), 16);
    return `rgba(${(n >> 16) & 255}, ${(n >> 8) & 255}, ${n & 255}, ${a})`;
  }

  function mixView(root) {
    const audio = document.getElementById("mix-audio");
    const canvas = document.getElementById("mix-canvas");
    const wrap = document.getElementById("mix-canvas-wrap");
    const play = document.getElementById("mix-play");
    const timeText = document.getElementById("mix-time");
    const message = document.getElementById("mix-message");
    const seamItems = Array.from(document.querySelectorAll(".seam"));
    let data = null;
    let layers = null;   // {base, played, width, height, dpr}
    let drawing = false;

    const rows = {
      lanes: 0,
      wave: 2 * LANE_H + LANE_GAP + GAP,
      gain: 2 * LANE_H + LANE_GAP + GAP + WAVE_H + GAP,
      axis: 2 * LANE_H + LANE_GAP + GAP + WAVE_H + GAP + GAIN_H + 4,
    };
    const HEIGHT = rows.axis + AXIS_H;

    function duration() { return data ? data.duration_s : 0; }
    function xOf(t, width) { return PAD_X + (t / duration()) * (width - 2 * PAD_X); }
    function tOf(x, width) {
      return Math.min(duration(), Math.max(0, (x - PAD_X) / (width - 2 * PAD_X) * duration()));
    }

    function layer(width, dpr) {
      const c = document.createElement("canvas");
      c.width = Math.round(width * dpr);
      c.height = Math.round(HEIGHT * dpr);
      const ctx = c.getContext("2d");
      ctx.scale(dpr, dpr);
      return { c, ctx };
    }

    function drawSeams(ctx, width) {
      data.seams.forEach((seam) => {
        const x0 = xOf(seam.start_s, width), x1 = xOf(seam.end_s, width);
        ctx.fillStyle = "rgba(29, 35, 48, 0.06)";
        ctx.fillRect(x0, 0, Math.max(1, x1 - x0), rows.axis);
        ctx.strokeStyle = "rgba(29, 35, 48, 0.25)";
        ctx.setLineDash([3, 3]);
        ctx.beginPath();
        ctx.moveTo(x0 + 0.5, rows.wave); ctx.lineTo(x0 + 0.5, rows.axis);
        ctx.moveTo(x1 + 0.5, rows.wave); ctx.lineTo(x1 + 0.5, rows.axis);
        ctx.stroke();
        ctx.setLineDash([]);
        const cx = (x0 + x1) / 2, cy = rows.wave + 12;
        ctx.fillStyle = "#1d2330";
        ctx.beginPath(); ctx.arc(cx, cy, 9, 0, 2 * Math.PI); ctx.fill();
        ctx.fillStyle = "#fff";
        ctx.font = "bold 11px system-ui, sans-serif";
        ctx.textAlign = "center"; ctx.textBaseline = "middle";
        ctx.fillText(String(seam.number), cx, cy + 0.5);
      });
    }

    function drawLanes(ctx, width) {
      data.songs.forEach((song, i) => {
        const color = COLORS[i % COLORS.length];
        const y = rows.lanes + (i % 2) * (LANE_H + LANE_GAP);
        const x0 = xOf(song.heard_from_s, width), x1 = xOf(song.heard_until_s, width);
        ctx.fillStyle = alpha(color, 0.1);
        ctx.fillRect(x0, y, x1 - x0, LANE_H);
        const sections = song.sections.length ? song.sections
          : [{ start_s: song.heard_from_s, end_s: song.heard_until_s, letter: "", function: "" }];
        sections.forEach((sec, k) => {
          const s0 = xOf(sec.start_s, width), s1 = xOf(sec.end_s, width);
          ctx.fillStyle = alpha(color, k % 2 ? 0.22 : 0.34);
          ctx.fillRect(s0, y, Math.max(1, s1 - s0 - 1), LANE_H - 10);
          const fn = sec.function && sec.function !== "unspecified" ? ` ${sec.function}` : "";
          const label = `${sec.letter}${fn}`;
          if (label && s1 - s0 > 16) {
            ctx.save();
            ctx.beginPath(); ctx.rect(s0, y, s1 - s0 - 2, LANE_H - 10); ctx.clip();
            ctx.fillStyle = "#1d2330";
            ctx.font = "11px system-ui, sans-serif";
            ctx.textAlign = "left"; ctx.textBaseline = "middle";
            ctx.fillText(label, s0 + 4, y + (LANE_H - 10) / 2 + 0.5);
            ctx.restore();
          }
        });
        // Beat ticks under the bands: downbeats long; only downbeats when beats crowd.
        const perBeat = song.beats_s.length > 1
          ? (xOf(song.beats_s[song.beats_s.length - 1], width) - xOf(song.beats_s[0], width))
            / (song.beats_s.length - 1) : 10;
        ctx.strokeStyle = color;
        ctx.lineWidth = 1;
        ctx.beginPath();
        song.beats_s.forEach((b, k) => {
          const down = song.beat_positions[k] === 1;
          if (!down && perBeat < 3) return;
          const x = Math.round(xOf(b, width)) + 0.5;
          ctx.moveTo(x, y + LANE_H - (down ? 9 : 5));
          ctx.lineTo(x, y + LANE_H);
        });
        ctx.stroke();
      });
    }

    function drawWave(ctx, width, color) {
      const peaks = data.peaks, n = peaks.length;
      const mid = rows.wave + WAVE_H / 2, half = WAVE_H / 2 - 2;
      const left = PAD_X, span = width - 2 * PAD_X;
      ctx.fillStyle = color;
      for (let x = 0; x < span; x += 1) {
        const a = Math.floor((x / span) * n), b = Math.max(a + 1, Math.floor(((x + 1) / span) * n));
        let lo = 0, hi = 0;
        for (let k = a; k < Math.min(b, n); k += 1) {
          lo = Math.min(lo, peaks[k][0]); hi = Math.max(hi, peaks[k][1]);
        }
        const top = mid - Math.min(1, hi) * half, bottom = mid - Math.max(-1, lo) * half;
        ctx.fillRect(left + x, top, 1, Math.max(1, bottom - top));
      }
    }

    function drawGains(ctx, width) {
      const base = rows.gain + GAIN_H;
      ctx.strokeStyle = "#e4e7ee";
      ctx.lineWidth = 1;
      [0, 0.5, 1].forEach((g) => {
        const y = Math.round(base - g * GAIN_H) + 0.5;
        ctx.beginPath(); ctx.moveTo(PAD_X, y); ctx.lineTo(width - PAD_X, y); ctx.stroke();
      });
      data.songs.forEach((song, i) => {
        if (!song.gain.length) return;
        const color = COLORS[i % COLORS.length];
        const path = new Path2D();
        song.gain.forEach(([t, g], k) => {
          const x = xOf(t, width), y = base - g * GAIN_H;
          if (k === 0) path.moveTo(x, y); else path.lineTo(x, y);
        });
        const fill = new Path2D(path);
        fill.lineTo(xOf(song.gain[song.gain.length - 1][0], width), base);
        fill.lineTo(xOf(song.gain[0][0], width), base);
        fill.closePath();
        ctx.fillStyle = alpha(color, 0.12);
        ctx.fill(fill);
        ctx.strokeStyle = color;
        ctx.lineWidth = 2;
        ctx.stroke(path);
      });
      ctx.fillStyle = "#5b6475";
      ctx.font = "10px system-ui, sans-serif";
      ctx.textAlign = "left"; ctx.textBaseline = "top";
      ctx.fillText("gain", PAD_X + 2, rows.gain + 1);
    }

    function drawAxis(ctx, width) {
      const total = duration();
      const steps = [5, 10, 15, 30, 60, 120, 300, 600];
      const step = steps.find((s) => (width - 2 * PAD_X) / (total / s) >= 70) || 1200;
      ctx.strokeStyle = "#9aa1b1"; ctx.fillStyle = "#5b6475";
      ctx.font = "11px system-ui, sans-serif";
      ctx.textBaseline = "top";
      for (let t = 0; t <= total + 1e-6; t += step) {
        const x = Math.round(xOf(t, width)) + 0.5;
        ctx.beginPath(); ctx.moveTo(x, rows.axis); ctx.lineTo(x, rows.axis + 5); ctx.stroke();
        ctx.textAlign = t === 0 ? "left" : x > width - PAD_X - 16 ? "right" : "center";
        ctx.fillText(clock(t), x, rows.axis + 7);
      }
    }

    function build() {
      const width = wrap.clientWidth;
      if (!data || width < 50) return;
      const dpr = window.devicePixelRatio || 1;
      canvas.width = Math.round(width * dpr);
      canvas.height = Math.round(HEIGHT * dpr);
      canvas.style.height = `${HEIGHT}px`;
      const base = layer(width, dpr), played = layer(width, dpr);
      drawSeams(base.ctx, width);
      drawLanes(base.ctx, width);
      drawWave(base.ctx, width, "#b9c1d6");
      drawGains(base.ctx, width);
      drawAxis(base.ctx, width);
      drawWave(played.ctx, width, "#3a5bd9");
      layers = { base: base.c, played: played.c, width, dpr };
      frame();
    }

    function activeSeam(t) {
      seamItems.forEach((li) => {
        const inside = t >= Number(li.dataset.start) && t <= Number(li.dataset.end);
        li.classList.toggle("active", inside);
      });
    }

    function frame() {
      if (!layers) return;
      const { width, dpr } = layers;
      const ctx = canvas.getContext("2d");
      const t = audio.currentTime || 0;
      const x = xOf(t, width);
      ctx.setTransform(1, 0, 0, 1, 0, 0);
      ctx.clearRect(0, 0, canvas.width, canvas.height);
      ctx.drawImage(layers.base, 0, 0);
      const cut = Math.max(0, Math.round(x * dpr));
      if (cut > 0) {
        ctx.drawImage(layers.played, 0, 0, cut, canvas.height, 0, 0, cut, canvas.height);
      }
      ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
      ctx.fillStyle = "#b3261e";
      ctx.fillRect(Math.round(x) - 1, 0, 2, rows.axis);
      canvas.dataset.cursorS = t.toFixed(2);
      timeText.textContent = `${clock(t)} / ${clock(duration())}`;
      activeSeam(t);
    }

    function loop() {
      frame();
      if (!audio.paused) window.requestAnimationFrame(loop); else drawing = false;
    }

    function startLoop() {
      if (!drawing) { drawing = true; window.requestAnimationFrame(loop); }
    }

    function seek(t) {
      audio.currentTime = Math.min(Math.max(0, t), duration());
      frame();
    }

    play.addEventListener("click", () => {
      if (audio.paused) audio.play().catch((e) => { message.textContent = `Cannot play: ${e}`; });
      else audio.pause();
    });
    audio.addEventListener("play", () => { play.textContent = "Pause"; startLoop(); });
    audio.addEventListener("pause", () => { play.textContent = "Play"; frame(); });
    audio.addEventListener("seeked", frame);
    audio.addEventListener("timeupdate", () => { if (audio.paused) frame(); });
    canvas.addEventListener("click", (event) => {
      if (!layers) return;
      const box = canvas.getBoundingClientRect();
      seek(tOf(event.clientX - box.left, layers.width));
    });

    seamItems.forEach((li) => {
      const seam = Number(li.dataset.seam);
      const state = li.querySelector(".seam-state");
      li.querySelector(".seam-listen").addEventListener("click", () => {
        seek(Number(li.dataset.start) - 4);
        audio.play().catch((e) => { message.textContent = `Cannot play: ${e}`; });
      });
      li.querySelectorAll(".rate").forEach((button) => {
        button.addEventListener("click", async () => {
          const rating = Number(button.dataset.rating);
          state.textContent = "saving…";
          const response = await fetch(
            `/mixes/${encodeURIComponent(root.dataset.mix)}/seams/${seam}/rating`, {
              method: "POST", credentials: "same-origin",
              headers: { "content-type": "application/json", "x-csrf-token": root.dataset.csrf },
              body: JSON.stringify({ rating }),
            });
          const answer = await response.json().catch(() => ({}));
          if (response.ok) {
            li.querySelectorAll(".rate").forEach((b) => {
              b.classList.toggle("chosen", b === button);
              b.setAttribute("aria-pressed", b === button ? "true" : "false");
              b.disabled = true; // one rating per seam: the server refuses a second
            });
            state.textContent = `rated ${rating} ✓`;
          } else {
            state.textContent = answer.error || "The rating was not stored.";
          }
        });
      });
    });

    fetch(root.dataset.src, { credentials: "same-origin" })
      .then((r) => r.json().then((body) => (r.ok ? body : Promise.reject(body.error || r.status))))
      .then((body) => {
        data = body;
        play.disabled = false;
        build();
        if (window.ResizeObserver) new ResizeObserver(build).observe(wrap);
        else window.addEventListener("resize", build);
        root.classList.add("ready");
      })
      .catch((e) => { message.textContent = `The mix could not be loaded: ${e}`; });
  }

  document.addEventListener("DOMContentLoaded", () => {
    const root = document.getElementById("mixview");
    if (root) mixView(root);
  });
}());
