// The bar chart of bench/run.ts (latest.svg), written as plain SVG text: one group
// per measurement, one bar per server, its throughput relative to bunicorn's (= 1.0).
import type { SuiteReport } from "./report.ts";
import { SERVER_LABELS, SERVER_NAMES, type ServerName } from "./servers.ts";

const COLORS: Record<ServerName, string> = {
  bunicorn: "#d9480f", gunicorn: "#1c7ed6", granian: "#37b24d", uwsgi: "#7048e8", waitress: "#868e96", bunserve: "#f59f00", nginx: "#009639",
};
const WIDTH = 1100;
const HEIGHT = 500;
const MARGIN = { top: 90, right: 20, bottom: 70, left: 60 };
const BAR_GAP = 4;
const MAX_BAR_WIDTH = 20;
const GROUP_PADDING = 14;

interface Group {
  label: string;
  bars: { server: ServerName; ratio: number | null }[];
}

function escapeXml(text: string): string {
  return text.replaceAll("&", "&amp;").replaceAll("<", "&lt;").replaceAll(">", "&gt;").replaceAll('"', "&quot;");
}

function groupsOf(report: SuiteReport): Group[] {
  return report.scenarios.filter((s) => !s.skipped).flatMap((s) =>
    s.measurements.map((m) => ({
      label: m.name === s.name ? s.name : `${s.name} ${m.name}`,
      bars: m.results.map((r) => ({ server: r.server, ratio: r.ratio })),
    })));
}

/** The top of the scale: the largest ratio, rounded up to a half, and at least 1.5. */
function scaleTop(groups: Group[]): number {
  const largest = Math.max(1.5, ...groups.flatMap((g) => g.bars.map((b) => b.ratio ?? 0)));
  return Math.ceil(largest * 2) / 2;
}

function text(x: number, y: number, content: string, attrs = ""): string {
  return `<text x="${x.toFixed(1)}" y="${y.toFixed(1)}" ${attrs}>${escapeXml(content)}</text>`;
}

function axis(top: number, y: (ratio: number) => number): string[] {
  const lines: string[] = [];
  for (let tick = 0; tick <= top + 1e-9; tick += 0.5) {
    const yy = y(tick);
    lines.push(`<line x1="${MARGIN.left}" x2="${WIDTH - MARGIN.right}" y1="${yy.toFixed(1)}" y2="${yy.toFixed(1)}" stroke="#e9ecef"/>`);
    lines.push(text(MARGIN.left - 8, yy + 4, tick.toFixed(1), `text-anchor="end" font-size="11" fill="#495057"`));
  }
  const one = y(1).toFixed(1);
  lines.push(`<line x1="${MARGIN.left}" x2="${WIDTH - MARGIN.right}" y1="${one}" y2="${one}" stroke="#212529" stroke-dasharray="5,4"/>`);
  lines.push(text(16, MARGIN.top + (HEIGHT - MARGIN.top - MARGIN.bottom) / 2, "× bunicorn", `font-size="12" fill="#495057" transform="rotate(-90 16 ${MARGIN.top + (HEIGHT - MARGIN.top - MARGIN.bottom) / 2})" text-anchor="middle"`));
  return lines;
}

function legend(servers: ServerName[]): string[] {
  return servers.flatMap((server, i) => {
    const x = MARGIN.left + i * 120;
    const y = 62;
    return [`<rect x="${x}" y="${y - 10}" width="12" height="12" fill="${COLORS[server]}"/>`, text(x + 18, y, SERVER_LABELS[server], `font-size="12"`)];
  });
}

function bars(groups: Group[], y: (ratio: number) => number): string[] {
  const plotWidth = WIDTH - MARGIN.left - MARGIN.right;
  const groupWidth = plotWidth / Math.max(1, groups.length);
  const base = y(0);
  return groups.flatMap((group, gi) => {
    const inner = groupWidth - GROUP_PADDING;
    const barWidth = Math.min(MAX_BAR_WIDTH, inner / Math.max(1, group.bars.length) - BAR_GAP);
    const used = group.bars.length * (barWidth + BAR_GAP) - BAR_GAP;
    const x0 = MARGIN.left + gi * groupWidth + GROUP_PADDING / 2 + (inner - used) / 2; // bars centred in their group
    const out = group.bars.flatMap((bar, bi) => {
      const x = x0 + bi * (barWidth + BAR_GAP);
      const center = x + barWidth / 2;
      if (bar.ratio === null) return [text(center, base - 4, "✗", `text-anchor="middle" font-size="12" fill="${COLORS[bar.server]}"`)];
      const top = y(bar.ratio);
      return [
        `<rect x="${x.toFixed(1)}" y="${top.toFixed(1)}" width="${barWidth.toFixed(1)}" height="${(base - top).toFixed(1)}" fill="${COLORS[bar.server]}"><title>${escapeXml(`${group.label}: ${SERVER_LABELS[bar.server]} ${bar.ratio.toFixed(2)}×`)}</title></rect>`,
        text(center, top - 3, bar.ratio.toFixed(2), `text-anchor="middle" font-size="8" fill="#212529"`),
      ];
    });
    out.push(text(x0 + used / 2, base + 18, group.label, `text-anchor="middle" font-size="12" fill="#212529"`));
    return out;
  });
}

export function reportSvg(report: SuiteReport): string {
  const groups = groupsOf(report);
  const top = scaleTop(groups);
  const plotHeight = HEIGHT - MARGIN.top - MARGIN.bottom;
  const y = (ratio: number) => MARGIN.top + plotHeight * (1 - Math.min(ratio, top) / top);
  const present = SERVER_NAMES.filter((s) => groups.some((g) => g.bars.some((b) => b.server === s)));
  const { machine } = report;
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${HEIGHT}" viewBox="0 0 ${WIDTH} ${HEIGHT}" font-family="sans-serif">`,
    `<rect width="${WIDTH}" height="${HEIGHT}" fill="#ffffff"/>`,
    text(MARGIN.left, 24, "bunicorn vs peers: throughput relative to bunicorn (= 1.0, dashed); higher is faster", `font-size="16" font-weight="bold"`),
    text(MARGIN.left, 42, `${report.date} · ${machine.cpu}, ${machine.cores} cores · medians · ✗ = failed`, `font-size="12" fill="#495057"`),
    ...legend(present),
    ...axis(top, y),
    ...bars(groups, y),
    text(MARGIN.left, HEIGHT - 16, "ts: bunicorn with apps/hello.ts vs Bun.serve; idle: hello with 10,000 idle keep-alive connections held", `font-size="11" fill="#868e96"`),
    "</svg>",
    "",
  ].join("\n");
}
