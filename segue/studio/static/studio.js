// Segue Studio's pages: the triplet page and the listening test's page. Every clip must play
// to its end (no seeking: there are no controls) before an answer opens; the server checks
// the same rule.
"use strict";

async function postJson(path, csrf, body) {
  const response = await fetch(path, {
    method: "POST", credentials: "same-origin",
    headers: { "content-type": "application/json", "x-csrf-token": csrf },
    body: JSON.stringify(body),
  });
  const answer = await response.json().catch(() => ({}));
  return { ok: response.ok, answer };
}

// Wires the play buttons of `players` ({el, audio, meter, state, listened, last, ended}): one
// plays at a time, the time really heard is summed, and at the end `played(player)` reports
// it to the server ({ok, answer}); `refresh()` then updates what may be answered.
// The buttons come disabled from the server and are enabled here, once a click can play:
// a click before this script ran would otherwise be lost without a word.
function mustPlayToTheEnd(players, played, refresh, message) {
  players.forEach((p) => {
    const button = p.el.querySelector(".play");
    button.addEventListener("click", () => {
      players.forEach((other) => { if (other !== p) other.audio.pause(); });
      if (p.audio.ended) { p.audio.currentTime = 0; p.last = 0; }
      p.audio.play().catch((error) => {
        if (error.name === "AbortError") return; // paused by another clip before it started
        p.state.textContent = "could not play";
        message.textContent = "This clip could not be loaded; reload the page to try again.";
      });
    });
    button.disabled = false;
    p.audio.addEventListener("play", () => { p.state.textContent = "playing"; });
    p.audio.addEventListener("pause", () => {
      if (!p.audio.ended && !p.ended) p.state.textContent = "paused";
    });
    p.audio.addEventListener("timeupdate", () => {
      const step = p.audio.currentTime - p.last;
      if (step > 0 && step < 1.5) p.listened += step;
      p.last = p.audio.currentTime;
      if (p.audio.duration) p.meter.value = p.audio.currentTime / p.audio.duration;
    });
    p.audio.addEventListener("ended", async () => {
      p.listened += Math.max(0, p.audio.duration - p.last);
      p.last = 0;
      const { ok, answer } = await played(p);
      if (ok) {
        p.ended = true;
        p.el.classList.add("played");
        p.state.textContent = "played ✓";
        message.textContent = "";
      } else {
        p.state.textContent = "play again";
        message.textContent = answer.error || "That play did not count; play it again.";
      }
      refresh();
    });
  });
}

function studyPage(root) {
  const item = root.dataset.item;
  const csrf = root.dataset.csrf;
  const message = document.getElementById("message");
  const clips = Array.from(root.querySelectorAll(".clip")).map((el) => ({
    el, audio: el.querySelector("audio"), meter: el.querySelector(".meter"),
    state: el.querySelector(".state"), listened: 0, last: 0, ended: false,
  }));

  const post = (path, body) => postJson(path, csrf, body);

  function refreshPicks() {
    const all = clips.every((c) => c.ended);
    root.querySelectorAll(".pick").forEach((b) => { b.disabled = !all; });
  }

  mustPlayToTheEnd(clips, (clip) => post("/study/played",
    { item_id: item, slot: clips.indexOf(clip), listened_s: clip.listened }),
  refreshPicks, message);

  clips.forEach((clip) => {
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

// The listening test's page: two transitions, A and B, each played to its end (the server
// checks the same rule) before the choice and the 1-5 ratings open.
function listenPage(root) {
  const page = root.dataset.page;
  const csrf = root.dataset.csrf;
  const message = document.getElementById("listen-message");
  const submit = document.getElementById("listen-submit");
  const choice = document.getElementById("choice");
  const sides = Array.from(root.querySelectorAll(".transition")).map((el) => ({
    el, side: el.dataset.side, audio: el.querySelector("audio"),
    meter: el.querySelector(".meter"), state: el.querySelector(".state"),
    rating: el.querySelector(".rating"), listened: 0, last: 0, ended: false,
  }));

  const post = (path, body) => postJson(path, csrf, body);

  function checked(name) {
    const input = root.querySelector(`input[name="${name}"]:checked`);
    return input ? input.value : null;
  }

  function refresh() {
    const all = sides.every((s) => s.ended);
    choice.disabled = !all;
    sides.forEach((s) => { s.rating.disabled = !all; });
    submit.disabled = !(all && checked("pick") && checked("rating_a") && checked("rating_b"));
  }

  root.querySelectorAll("input[type=radio]").forEach((input) => {
    input.addEventListener("change", refresh);
  });

  mustPlayToTheEnd(sides, (s) => post("/listen/played",
    { page_id: page, side: s.side, listened_s: s.listened }), refresh, message);

  submit.addEventListener("click", async () => {
    submit.disabled = true;
    const { ok, answer } = await post("/listen/answer", {
      page_id: page, pick: checked("pick"),
      rating_a: Number(checked("rating_a")), rating_b: Number(checked("rating_b")),
    });
    if (ok) {
      window.location.assign(answer.next);
    } else {
      message.textContent = answer.error || "The answer was not stored.";
      refresh();
    }
  });
}

document.addEventListener("DOMContentLoaded", () => {
  const root = document.getElementById("study");
  if (root) studyPage(root);
  const listen = document.getElementById("listen");
  if (listen) listenPage(listen);
});
