"""The report's script, inlined into the page: views of the map, the hover card, a class's gallery, and the
selection of classes as a ``kerdensom select`` command.

It reads the tiles that the page already holds (their averages are the tiles' images) and the rest from
the page's JSON block (``#report-data``): representatives and member images are only turned into images
when they are shown, so the page paints as soon as the map's averages are decoded.
"""

SCRIPT = r"""
(() => {
  "use strict";
  const report = JSON.parse(document.getElementById("report-data").textContent);
  const classes = report.classes;
  const map = document.getElementById("map");
  const tiles = Array.from(map.querySelectorAll(".tile"));
  const averages = tiles.map((tile) => tile.querySelector("img").getAttribute("src"));
  const tooltip = document.getElementById("tooltip");
  const detail = document.getElementById("detail");
  const selectMode = document.getElementById("select-mode");
  const outInput = document.getElementById("subset-out");
  const selected = new Set();
  let opened = null;

  function make(tag, properties, children) {
    const element = document.createElement(tag);
    Object.assign(element, properties || {});
    for (const child of children || []) {
      element.append(child);
    }
    return element;
  }

  function number(value) {
    return value === null || value === undefined ? "n/a" : Number(value).toPrecision(3);
  }

  function percent(fraction) {
    return (100 * fraction).toFixed(1) + " %";
  }

  // ---- views: averages, representatives, U-matrix --------------------------------------------------
  function setView(view) {
    map.dataset.view = view;
    const sources = view === "representatives" ? report.representatives : averages;
    tiles.forEach((tile, node) => {
      const image = tile.querySelector("img");
      if (image.getAttribute("src") !== sources[node]) {
        image.setAttribute("src", sources[node]);
      }
      tile.style.backgroundColor = view === "u-matrix" ? classes[node].u_colour : "";
    });
    document.getElementById("u-legend").hidden = view !== "u-matrix";
  }
  for (const input of document.querySelectorAll("input[name=view]")) {
    input.addEventListener("change", () => setView(input.value));
  }

  // ---- hover: class number, size, distances to the neighbours -----------------------------------
  function describe(node) {
    const item = classes[node];
    const lines = [
      "Class #" + item.number + "  (row " + item.row + ", column " + item.column + ")",
      item.count + " particles (" + percent(item.fraction) + ")" + (item.count ? "" : ": empty"),
      "mean distance to neighbours: " + number(item.u),
      "neighbours: " + item.neighbours.map(([other, distance]) => "#" + other + " " + number(distance))
        .join(", "),
    ];
    return lines.join("\n");
  }
  function showTooltip(tile, node) {
    tooltip.textContent = describe(node);
    tooltip.hidden = false;
    const box = tile.getBoundingClientRect();
    tooltip.style.left = window.scrollX + box.right + 8 + "px";
    tooltip.style.top = window.scrollY + box.top + "px";
  }

  // ---- a class's gallery -------------------------------------------------------------------------
  function gallery(members, kind) {
    return make("div", { className: "gallery " + kind }, members.map(([source, distance]) =>
      make("img", { src: source, alt: "", title: "distance to the code vector: " + number(distance) })));
  }
  function open(node) {
    const item = classes[node];
    if (opened !== null) {
      tiles[opened].classList.remove("opened");
    }
    opened = node;
    tiles[node].classList.add("opened");
    const width = Math.max(report.image_size[1], 192);
    const figures = [make("figure", {}, [
      make("img", { src: averages[node], alt: "average of class " + item.number, width: width }),
      make("figcaption", {
        textContent: "average, " + report.image_size[1] + " \u00d7 " + report.image_size[0] + " px",
      }),
    ])];
    if (report.representatives) {
      figures.push(make("figure", {}, [
        make("img", {
          src: report.representatives[node], alt: "representative of class " + item.number, width: width,
        }),
        make("figcaption", { textContent: "representative (code vector)" }),
      ]));
    }
    const [nearest, farthest] = item.members;
    const shown = nearest.length + farthest.length;
    const summary = item.count === 0
      ? "No particles: the representative is what the map interpolates between its neighbours."
      : shown === item.count
        ? "All " + item.count + " members, nearest to the code vector first."
        : item.count + " members; shown: the " + nearest.length + " nearest to the code vector and the " +
          farthest.length + " farthest (where junk and misfits show).";
    const toggle = make("button", { type: "button", className: "action", id: "toggle-selection" });
    toggle.disabled = item.count === 0;
    toggle.addEventListener("click", () => { toggleSelection(node); refreshToggle(); });
    function refreshToggle() {
      toggle.textContent = (selected.has(node) ? "Remove class #" : "Select class #") + item.number;
    }
    refreshToggle();
    const content = [
      make("h2", { textContent: "Class #" + item.number }),
      make("p", {
        className: "muted",
        textContent: "row " + item.row + ", column " + item.column + " \u00b7 " + item.count +
          " particles (" + percent(item.fraction) + ") \u00b7 mean distance to neighbours " + number(item.u),
      }),
      make("div", { className: "full" }, figures),
      make("div", { className: "buttons" }, [toggle]),
      make("p", { className: "member-count", textContent: summary }),
    ];
    content[4].dataset.count = item.count;
    if (nearest.length) {
      const heading = farthest.length ? "Nearest" : "Members";
      content.push(make("h3", { textContent: heading }), gallery(nearest, "nearest"));
    }
    if (farthest.length) {
      content.push(make("h3", { textContent: "Farthest" }), gallery(farthest, "farthest"));
    }
    detail.replaceChildren(...content);
    detail.dataset.class = item.number;
    detail.hidden = false;
  }

  // ---- selection -> kerdensom select ------------------------------------------------------------
  function compact(numbers) {
    // 3,4,10-12: runs of three or more as ranges, as `kerdensom select --classes` reads them.
    const parts = [];
    for (let start = 0; start < numbers.length;) {
      let end = start;
      while (end + 1 < numbers.length && numbers[end + 1] === numbers[end] + 1) {
        end += 1;
      }
      if (end - start >= 2) {
        parts.push(numbers[start] + "-" + numbers[end]);
      } else {
        parts.push(...numbers.slice(start, end + 1).map(String));
      }
      start = end + 1;
    }
    return parts.join(",");
  }
  function shellQuote(text) {
    return /^[A-Za-z0-9_@%+=:,./-]+$/.test(text) ? text : "'" + text.replace(/'/g, "'\\''") + "'";
  }
  function selectedNumbers() {
    return Array.from(selected).sort((a, b) => a - b).map((node) => classes[node].number);
  }
  function updateSelection() {
    const numbers = selectedNumbers();
    tiles.forEach((tile, node) => {
      tile.classList.toggle("selected", selected.has(node));
      tile.setAttribute("aria-pressed", String(selected.has(node)));
    });
    const particles = Array.from(selected).reduce((total, node) => total + classes[node].count, 0);
    const list = numbers.length ? compact(numbers) : "";
    document.getElementById("class-list").textContent = list || "none";
    document.getElementById("selected-particles").textContent = String(particles);
    document.getElementById("select-command").textContent = numbers.length
      ? report.select_prefix + list + " --out " + shellQuote(outInput.value || "subset.star")
      : "Select classes to get the command that writes their particles.";
    const download = document.getElementById("download-classes");
    const text = numbers.map((item) => item + "\n").join("");
    download.href = "data:text/plain;charset=utf-8," + encodeURIComponent(text);
    download.setAttribute("aria-disabled", String(!numbers.length));
  }
  function toggleSelection(node) {
    if (classes[node].count === 0) {
      return;  // an empty class has no particles to select
    }
    if (selected.has(node)) {
      selected.delete(node);
    } else {
      selected.add(node);
    }
    updateSelection();
  }
  outInput.addEventListener("input", updateSelection);
  document.getElementById("clear-selection").addEventListener("click", () => {
    selected.clear();
    updateSelection();
    if (opened !== null) {
      open(opened);
    }
  });
  document.getElementById("copy-command").addEventListener("click", () => {
    const command = document.getElementById("select-command");
    const range = document.createRange();
    range.selectNodeContents(command);
    window.getSelection().removeAllRanges();
    window.getSelection().addRange(range);
    // The clipboard may be refused to a page opened from disk; the command then stays selected to copy.
    if (navigator.clipboard) {
      navigator.clipboard.writeText(command.textContent).catch(() => {});
    }
  });

  // ---- the tiles ----------------------------------------------------------------------------------
  tiles.forEach((tile, node) => {
    tile.addEventListener("mouseenter", () => showTooltip(tile, node));
    tile.addEventListener("focus", () => showTooltip(tile, node));
    tile.addEventListener("mouseleave", () => { tooltip.hidden = true; });
    tile.addEventListener("blur", () => { tooltip.hidden = true; });
    tile.addEventListener("click", (event) => {
      if (event.shiftKey || event.ctrlKey || event.metaKey || selectMode.checked) {
        toggleSelection(node);
        if (opened === node) {
          open(node);
        }
      } else {
        open(node);
      }
    });
  });
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && opened !== null) {
      tiles[opened].classList.remove("opened");
      opened = null;
      detail.hidden = true;
    }
  });
  updateSelection();
  performance.mark("report-ready");
})();
"""
