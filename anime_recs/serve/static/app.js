// The page over the anime_recs HTTP API: plain JavaScript, no build step.
"use strict";
const $ = (id) => document.getElementById(id);
const mine = new Map(); // mal_id -> {name, rating}
let picked = null;

function showError(message) { const e = $("error"); e.textContent = message || ""; e.hidden = !message; }

async function api(path, options) {
  const response = await fetch(path, options);
  const body = await response.json().catch(() => ({ detail: response.statusText }));
  if (!response.ok) throw new Error(body.detail || response.statusText);
  showError("");
  return body;
}

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  Object.assign(node, attrs || {});
  for (const child of children) node.append(child);
  return node;
}

function card(row, extra) {
  const facts = [row.type, row.score != null ? `score ${row.score}` : null, (row.genres || []).join(", ")].filter(Boolean).join(" · ");
  return el("div", { className: "card" },
    el("h4", { textContent: row.name }),
    extra ? el("div", { className: "why", textContent: extra }) : "",
    el("div", { className: "facts", textContent: facts }),
    el("div", { className: "syn", textContent: row.synopsis || "" }));
}

let typing = null;
$("search").addEventListener("input", () => {
  clearTimeout(typing);
  typing = setTimeout(async () => {
    const q = $("search").value.trim();
    const list = $("suggestions");
    list.replaceChildren();
    if (q.length < 2) return;
    try {
      const found = await api(`/api/search?q=${encodeURIComponent(q)}&n=8`);
      for (const hit of found.results) {
        const item = el("li", { textContent: `${hit.name} (${hit.type})` });
        item.dataset.malId = hit.mal_id;
        item.addEventListener("click", () => pick(hit.mal_id, hit.name));
        list.append(item);
      }
    } catch (err) { showError(err.message); }
  }, 150);
});

async function pick(malId, name) {
  picked = { malId, name };
  $("suggestions").replaceChildren();
  $("picked").hidden = false;
  $("picked-name").textContent = name;
  try {
    const similar = await api(`/api/anime/similar?anime=${malId}&n=6`);
    $("similar").replaceChildren(...similar.results.map((r) => card(r, `similarity ${r.similarity.toFixed(2)}`)));
  } catch (err) { showError(err.message); }
}

function drawMine() {
  const list = $("my-ratings");
  list.replaceChildren(...[...mine].map(([id, v]) => {
    const remove = el("button", { type: "button", textContent: "×", title: "remove" });
    remove.addEventListener("click", () => { mine.delete(id); drawMine(); });
    return el("li", {}, `${v.name}: ${v.rating} `, remove);
  }));
  if (!mine.size) list.append(el("li", { className: "muted empty", textContent: "rate a few anime: search, pick one, add it" }));
  $("recommend").disabled = mine.size === 0;
}

$("add-rating").addEventListener("click", () => {
  if (!picked) return;
  mine.set(picked.malId, { name: picked.name, rating: Number($("rating-value").value) });
  drawMine();
});

$("recommend").addEventListener("click", async () => {
  const ratings = [...mine].map(([anime, v]) => ({ anime, rating: v.rating }));
  try {
    const recs = await api("/api/new-user/recommendations", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ ratings, n: 9 }) });
    $("recs-note").textContent = `from your ${recs.used} ratings, model ${recs.version}` + (recs.note ? ` (${recs.note})` : "");
    $("recs").replaceChildren(...recs.results.map((r) => card(r, `${r.explanation} · match ${r.match.toFixed(0)} · predicted ${r.predicted_rating.toFixed(1)}`)));
  } catch (err) { showError(err.message); }
});

function cloud(target, counts) {
  const values = Object.values(counts);
  const top = Math.max(1, ...values);
  $(target).replaceChildren(...Object.entries(counts).map(([word, count]) =>
    el("span", { textContent: word, title: `${count} favourites`, style: `font-size:${(0.8 + 1.6 * count / top).toFixed(2)}em` })));
}

$("show-user").addEventListener("click", async () => {
  const user = $("user-id").value.trim();
  try {
    const [prefs, recs, users] = await Promise.all([
      api(`/api/users/${encodeURIComponent(user)}/preferences`),
      api(`/api/users/${encodeURIComponent(user)}/recommendations?n=6`),
      api(`/api/users/${encodeURIComponent(user)}/similar?n=5&num_faves=3`)]);
    cloud("genre-cloud", prefs.genres);
    cloud("source-cloud", prefs.sources);
    $("user-recs").replaceChildren(...recs.results.map((r) => card(r, `match ${r.match.toFixed(0)} · predicted ${r.predicted_rating.toFixed(1)}`)));
    $("similar-users").tBodies[0].replaceChildren(...users.results.map((u) =>
      el("tr", {}, el("td", { textContent: u.user_id }), el("td", { textContent: u.similarity.toFixed(2) }),
        el("td", { textContent: u.favorite_names.join(", ") }))));
    $("user-page").hidden = false;
  } catch (err) { $("user-page").hidden = true; showError(err.message); }
});

api("/api/info").then((info) => { $("version").textContent = `${info.version} · ${info.family} · ${info.users} users × ${info.anime} anime`; })
  .catch((err) => showError(err.message));
