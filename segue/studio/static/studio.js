// Segue Studio: the triplet page. Every clip must play to its end (no seeking: there are no
// controls) before the odd one out can be picked; the server checks the same rule.
"use strict";

function studyPage(root) {
  const item = root.dataset.item;
  const csrf = root.dataset.csrf;
  const message = document.getElementById("message");
  const clips = Array.from(root.querySelectorAll(".clip")).map((el) => ({
    el, audio: el.querySelector("audio"), meter: el.querySelector(".meter"),
    state: el.querySelector(".state"), listened: 0, last: 0, ended: false,
  }));

  async function post(path, body) {
    const response = await fetch(path, {
      method: "POST", credentials: "same-origin",
      headers: { "content-type": "application/json", "x-csrf-token": csrf },
      body: JSON.stringify(body),
    });
    const answer = await response.json().catch(() => ({}));
    return { ok: response.ok, answer };
  }

  function refreshPicks() {
    const all = clips.every((c) => c.ended);
    root.querySelectorAll(".pick").forEach((b) => { b.disabled = !all; });
  }

  clips.forEach((clip, slot) => {
    const button = clip.el.querySelector(".play");
    button.addEventListener("click", () => {
      clips.forEach((other) => { if (other !== clip) other.audio.pause(); });
      if (clip.audio.ended) { clip.audio.currentTime = 0; clip.last = 0; }
      clip.audio.play();
    });
    clip.audio.addEventListener("play", () => { clip.state.textContent = "playing"; });
    clip.audio.addEventListener("pause", () => {
      if (!clip.audio.ended && !clip.ended) clip.state.textContent = "paused";
    });
    clip.audio.addEventListener("timeupdate", () => {
      const step = clip.audio.currentTime - clip.last;
      if (step > 0 && step < 1.5) clip.listened += step;
      clip.last = clip.audio.currentTime;
      if (clip.audio.duration) clip.meter.value = clip.audio.currentTime / clip.audio.duration;
    });
    clip.audio.addEventListener("ended", async () => {
      clip.listened += Math.max(0, clip.audio.duration - clip.last);
      clip.last = 0;
      const { ok, answer } = await post("/study/played",
        { item_id: item, slot, listened_s: clip.listened });
      if (ok) {
        clip.ended = true;
        clip.el.classList.add("played");
        clip.state.textContent = "played ✓";
        message.textContent = "";
      } else {
        clip.state.textContent = "play again";
        message.textContent = answer.error || "That play did not count; play the clip again.";
      }
      refreshPicks();
    });
    clip.el.querySelector(".pick").addEventListener("click", async (event) => {
      root.querySelectorAll(".pick").forEach((b) => { b.disabled = true; });
      clip.el.classList.add("chosen");
      const { ok, answer } = await post("/study/answer",
        { item_id: item, pick: Number(event.currentTarget.dataset.pick) });
      if (ok) {
        window.location.assign(answer.next);
      } else {
        clip.el.classList.remove("chosen");
        message.textContent = answer.error || "The answer was not stored.";
        refreshPicks();
      }
    });
  });
}

document.addEventListener("DOMContentLoaded", () => {
  const root = document.getElementById("study");
  if (root) studyPage(root);
});
