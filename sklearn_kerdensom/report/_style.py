"""The report's style sheet, inlined into the page (a report fetches nothing)."""

STYLE = """
:root { --ink: #1d2430; --muted: #5b6472; --line: #d5d9e0; --panel: #f5f6f8; --accent: #e8590c; }
* { box-sizing: border-box; }
body { margin: 0; padding: 16px 20px 32px; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif;
       color: var(--ink); background: #fff; }
h1 { font-size: 20px; margin: 0 0 4px; }
h2 { font-size: 16px; margin: 0 0 8px; }
h3 { font-size: 14px; margin: 14px 0 6px; }
code, pre { font: 12.5px/1.4 ui-monospace, "DejaVu Sans Mono", Menlo, monospace; }
.muted { color: var(--muted); }
header p { margin: 2px 0; }
.layout { display: flex; flex-wrap: wrap; gap: 24px; align-items: flex-start; margin-top: 12px; }
.toolbar { display: flex; flex-wrap: wrap; gap: 14px; align-items: center; margin-bottom: 10px; }
.toolbar fieldset { border: 0; padding: 0; margin: 0; display: flex; gap: 2px; }
.toolbar legend { float: left; margin-right: 6px; color: var(--muted); }
.toolbar label.view { border: 1px solid var(--line); padding: 3px 10px; border-radius: 4px; cursor: pointer;
                      user-select: none; }
.toolbar label.view:has(input:checked) { background: var(--ink); color: #fff; border-color: var(--ink); }
.toolbar label.view input { position: absolute; opacity: 0; pointer-events: none; }
.toolbar label.view:has(input:disabled) { opacity: 0.4; cursor: not-allowed; }
.map-frame { display: grid; grid-template-columns: max-content max-content; justify-content: start; }
.axis { position: relative; color: var(--muted); font-size: 11px; }
.axis span { position: absolute; transform: translate(-50%, -50%); white-space: nowrap; }
.axis-title { position: absolute; color: var(--muted); font-size: 11px; }
#map { position: relative; background: #fff; }
.tile { position: absolute; padding: 0; margin: 0; border: 0; background: #777; cursor: pointer;
        outline-offset: 1px; overflow: hidden; }
.tile img { display: block; width: 100%; height: 100%; }
.tile .number, .tile .size { position: absolute; left: 0; padding: 0 3px; font-size: 10.5px;
        line-height: 14px; color: #fff; background: rgba(0, 0, 0, 0.55); pointer-events: none; }
.tile .number { top: 0; }
.tile .size { bottom: 0; }
.tile.empty img { opacity: 0.3; }
.tile.empty::after { content: "empty"; position: absolute; right: 2px; bottom: 0; font-size: 10px;
        color: #fff; background: rgba(160, 0, 0, 0.7); padding: 0 3px; line-height: 14px;
        pointer-events: none; }
.tile:hover, .tile:focus-visible { outline: 2px solid #1c7ed6; z-index: 2; }
.tile.selected { outline: 3px solid var(--accent); z-index: 1; }
.tile.opened { box-shadow: 0 0 0 5px rgba(28, 126, 214, 0.45); }
#map[data-view="u-matrix"] .tile img { visibility: hidden; }
#u-legend { margin-top: 8px; font-size: 12px; color: var(--muted); display: flex; gap: 8px;
            align-items: center; }
#u-legend[hidden] { display: none; }
#u-legend .bar { width: 220px; height: 12px; border: 1px solid var(--line); }
aside { flex: 1 1 380px; max-width: 640px; display: flex; flex-direction: column; gap: 16px; }
aside > section { background: var(--panel); border: 1px solid var(--line); border-radius: 6px;
                  padding: 12px; }
#select-command { white-space: pre-wrap; word-break: break-all; background: #fff; padding: 8px;
                  border: 1px solid var(--line); margin: 8px 0; }
.buttons { display: flex; flex-wrap: wrap; gap: 8px; align-items: center; }
button.action, a.action { font: inherit; font-size: 13px; padding: 3px 10px; border: 1px solid #8a93a3;
        border-radius: 4px; background: #fff; color: var(--ink); cursor: pointer; text-decoration: none; }
a.action[aria-disabled="true"] { opacity: 0.4; pointer-events: none; }
#subset-out { font: inherit; width: 14em; }
#detail[hidden] { display: none; }
.full { display: flex; flex-wrap: wrap; gap: 12px; }
.full figure { margin: 0; }
.full img { display: block; image-rendering: auto; background: #777; }
figcaption { font-size: 12px; color: var(--muted); }
.gallery { display: flex; flex-wrap: wrap; gap: 3px; }
.gallery img { width: 64px; height: 64px; display: block; }
#tooltip { position: absolute; z-index: 10; max-width: 320px; background: rgba(20, 24, 32, 0.92);
           color: #fff; padding: 6px 8px; border-radius: 4px; font-size: 12px; pointer-events: none;
           white-space: pre-line; }
#tooltip[hidden] { display: none; }
#run { margin-top: 28px; }
#run .tables { display: flex; flex-wrap: wrap; gap: 24px; align-items: flex-start; }
table { border-collapse: collapse; font-size: 12.5px; }
th, td { text-align: left; padding: 2px 10px 2px 0; border-bottom: 1px solid #eceef2; vertical-align: top; }
th { color: var(--muted); font-weight: normal; }
#run img { max-width: 100%; }
"""
