// The set-up page's sections as tabs. Plain JavaScript, no build step. Without it every section shows, one
// under the other. The open tab is the URL's hash (#answers, #knowledge, #model, #widget), so a link or a
// reload opens the same tab; a hash naming something inside a tab (#office-hours) opens that tab. With no
// hash: the tab the server names (data-initial-tab), else the first tab with a form error, else the first.
(function () {
  const root = document.getElementById("setup-tabs");
  if (!root) return;
  const panels = Array.from(root.querySelectorAll(":scope > .tab-panel"));
  if (!panels.length) return;
  const bar = document.createElement("nav");
  bar.className = "tab-bar";
  bar.setAttribute("role", "tablist");
  const tabs = panels.map((panel) => {
    const tab = document.createElement("a");
    tab.href = "#" + panel.id;
    tab.id = "tab-" + panel.id;
    tab.textContent = panel.dataset.tabTitle || panel.id;
    tab.setAttribute("role", "tab");
    tab.setAttribute("aria-controls", panel.id);
    if (panel.querySelector(".errorlist")) tab.classList.add("has-error");
    panel.setAttribute("role", "tabpanel");
    panel.setAttribute("aria-labelledby", tab.id);
    bar.appendChild(tab);
    return tab;
  });
  root.insertBefore(bar, panels[0]);

  function panelFor(hash) {
    if (!hash || hash === "#") return null;
    let target = null;
    try { target = document.getElementById(decodeURIComponent(hash.slice(1))); } catch (e) { return null; }
    if (!target) return null;
    return panels.find((panel) => panel === target || panel.contains(target)) || null;
  }

  function show(panel, focusTab) {
    panels.forEach((p, i) => {
      const on = p === panel;
      p.hidden = !on;
      tabs[i].setAttribute("aria-selected", on ? "true" : "false");
      tabs[i].tabIndex = on ? 0 : -1;
      if (on && focusTab) tabs[i].focus();
    });
  }

  function initial() {
    const fromHash = panelFor(window.location.hash);
    if (fromHash) return fromHash;
    const named = root.dataset.initialTab && document.getElementById(root.dataset.initialTab);
    if (named && panels.includes(named)) return named;
    return panels.find((p) => p.querySelector(".errorlist")) || panels[0];
  }

  tabs.forEach((tab, i) => {
    tab.addEventListener("click", (event) => {
      event.preventDefault();
      history.replaceState(null, "", "#" + panels[i].id);
      show(panels[i]);
    });
    tab.addEventListener("keydown", (event) => {
      const step = event.key === "ArrowRight" ? 1 : event.key === "ArrowLeft" ? -1 : 0;
      if (!step) return;
      const next = (i + step + panels.length) % panels.length;
      history.replaceState(null, "", "#" + panels[next].id);
      show(panels[next], true);
    });
  });
  // Links elsewhere on the page (the checklist's "Write answers") change the hash: follow them.
  window.addEventListener("hashchange", () => {
    const panel = panelFor(window.location.hash);
    if (panel) show(panel);
  });
  show(initial());
  const panel = panelFor(window.location.hash);
  if (panel && panel.id !== window.location.hash.slice(1)) {
    const target = document.getElementById(window.location.hash.slice(1));
    if (target) target.scrollIntoView();
  }
})();
