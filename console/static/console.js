// duralog console: live updates and a few interactions. Hand-written, no libraries.
// Everything shown comes from the server already escaped, or is set as textContent.
"use strict";
(function () {
  const body = document.body;
  const live = body.dataset.live;
  const flash = document.getElementById("flash");

  function say(text) {
    flash.textContent = text;
    flash.hidden = !text;
  }

  // Fetch this page again and swap its live part: rows, status, timeline, events.
  let pending = null;
  async function refresh() {
    pending = null;
    const response = await fetch(location.href, { headers: { Accept: "text/html" } });
    if (!response.ok) return;
    const page = new DOMParser().parseFromString(await response.text(), "text/html");
    // The shape picked on the timeline stays picked, its events shown, in the new page.
    const picked = document.querySelector("svg .shape.picked");
    const seq = picked ? picked.dataset.seq : null;
    for (const id of ["live", "live-events"]) {
      const fresh = page.getElementById(id);
      const here = document.getElementById(id);
      if (fresh && here) here.replaceWith(fresh);
    }
    wire();
    const again = seq && document.querySelector('svg .shape[data-seq="' + CSS.escape(seq) + '"]');
    if (again) pick(again);
  }
  function soon() {
    if (pending === null) pending = setTimeout(refresh, 300);
  }

  if (live && window.EventSource) {
    const events = new EventSource("/api/events");
    const dot = document.getElementById("live-dot");
    events.onopen = () => {
      dot.classList.add("on");
      // What was committed between this page's render and the stream's opening
      // came on no stream: fetch the page once more (also after a reconnection).
      soon();
    };
    events.onerror = () => dot.classList.remove("on");
    events.onmessage = (message) => {
      const event = JSON.parse(message.data);
      if (live === "list" || event.workflow_id === body.dataset.workflow) soon();
    };
  }

  // Actions: posted without leaving the page; the page then shows what changed.
  for (const form of document.querySelectorAll("form.js-action")) {
    form.addEventListener("submit", async (submit) => {
      submit.preventDefault();
      const response = await fetch(form.action, {
        method: "POST",
        body: new URLSearchParams(new FormData(form)),
      });
      if (response.ok) {
        say("");
        form.reset();
        refresh();
      } else {
        say(await response.text());
      }
    });
  }

  // Time travel: the state at the chosen event, the fold `duralog inspect --at` shows.
  const at = document.getElementById("at");
  if (at) {
    const label = document.getElementById("at-label");
    const state = document.getElementById("state");
    let asked = 0;
    const show = async () => {
      const seq = at.value;
      const mine = ++asked;
      label.textContent = "seq " + seq + " of " + at.max;
      const response = await fetch(at.dataset.stateUrl + "?at=" + encodeURIComponent(seq));
      const text = JSON.stringify(await response.json(), null, 2);
      if (mine === asked) state.textContent = text;
    };
    at.addEventListener("input", show);
    if (!new URLSearchParams(location.search).has("at")) show();
  }

  // The timeline: a click shows the events a bar or point stands for.
  function pick(shape) {
    for (const other of document.querySelectorAll("svg .picked")) other.classList.remove("picked");
    shape.classList.add("picked");
    document.getElementById("detail").textContent = shape.dataset.seqs
      .split(" ")
      .map((seq) => document.querySelector("#seq-" + seq + " pre").textContent)
      .join("\n");
  }
  function wire() {
    for (const shape of document.querySelectorAll("svg .shape")) {
      shape.addEventListener("click", () => pick(shape));
    }
  }
  wire();
})();
