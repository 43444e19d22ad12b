// DOM building without innerHTML (every value from the API is text, never markup), the
// formats the pages share, and the hand-drawn SVG line chart.

/// An element: `h("a", {href: "#/x", class: "c"}, "text", child, ...)`; `on*` attributes
/// are listeners; null, false and undefined children are skipped; arrays are flattened.
export function h(tag, attributes = {}, ...children) {
  const element = tag.startsWith("svg:")
    ? document.createElementNS("http://www.w3.org/2000/svg", tag.slice(4))
    : document.createElement(tag);
  for (const [name, value] of Object.entries(attributes || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on")) element.addEventListener(name.slice(2), value);
    else if (name === "value") element.value = value;
    else element.setAttribute(name, value === true ? "" : value);
  }
  append(element, children);
  return element;
}

function append(element, children) {
  for (const child of children) {
    if (child === undefined || child === null || child === false) continue;
    if (Array.isArray(child)) append(element, child);
    else element.append(child instanceof Node ? child : String(child));
  }
}

/// Replaces `element`'s children.
export function fill(element, ...children) {
  element.replaceChildren();
  append(element, children);
  return element;
}

/// A table: `columns` are [heading, (row) => cell]; `empty` is shown when there are no rows.
export function table(columns, rows, empty) {
  if (!rows.length) return h("div", { class: "empty" }, empty);
  return h("table", {},
    h("thead", {}, h("tr", {}, columns.map(([heading]) => h("th", {}, heading)))),
    h("tbody", {}, rows.map((row) => h("tr", {}, columns.map(([, cell]) => h("td", {}, cell(row)))))));
}

/// A status word, coloured by what it means.
export function badge(status) {
  if (!status) return "";
  const tone = /^(RUNNING|ACTIVE|HEALTHY|COMPLETED|SUCCESSFUL|STEADY_STATE|PRIMARY|true)$/.test(status)
    ? "good"
    : /^(STOPPED|FAILED|UNHEALTHY|INACTIVE|ROLLBACK_FAILED|STOP_REQUESTED|false)$/.test(status)
      ? "bad"
      : /^(DRAINING|IN_PROGRESS|PENDING|PROVISIONING|ACTIVATING|DEACTIVATING|STOPPING|DEPROVISIONING|ROLLBACK_IN_PROGRESS|ROLLBACK_SUCCESSFUL|ROLLBACK_REQUESTED|UNKNOWN)$/.test(status)
        ? "busy"
        : "plain";
  return h("span", { class: `badge ${tone}` }, status);
}

/// The last segment of an ARN (`.../cluster/task-id` → `task-id`).
export const short = (arn) => (arn || "").split("/").pop();

/// `family:revision` of a task definition ARN.
export const revisionOf = (arn) => short(arn);

/// A timestamp (epoch seconds, as ECS answers) as local time; absent as "".
export function when(seconds) {
  if (seconds === undefined || seconds === null) return "";
  const date = new Date(Number(seconds) * 1000);
  return date.toLocaleString(undefined, { hour12: false });
}

export function bytes(n) {
  if (n === undefined || n === null) return "";
  const units = ["B", "KiB", "MiB", "GiB"];
  let i = 0;
  let value = Number(n);
  while (value >= 1024 && i < units.length - 1) { value /= 1024; i += 1; }
  return `${value.toFixed(i ? 1 : 0)} ${units[i]}`;
}

/// An error box in the API's words, placed next to what caused it.
export function errorBox(error) {
  if (!error) return "";
  const text = error.code ? `${error.code}: ${error.message}` : String(error);
  return h("div", { class: "error", role: "alert" }, text);
}

/// A button that runs `action` once per click, disabled meanwhile; its error lands in `out`.
export function actionButton(label, action, out, attributes = {}) {
  const button = h("button", {
    ...attributes,
    onclick: async (event) => {
      event.preventDefault();
      button.disabled = true;
      fill(out);
      try {
        await action();
      } catch (error) {
        fill(out, errorBox(error));
      } finally {
        button.disabled = false;
      }
    },
  }, label);
  return button;
}

/// A line chart of `points` ([t, value]) as SVG, `format` labelling the values; `note` is
/// added to the caption.
export function lineChart(title, points, format, cssClass, note = "") {
  const width = 420;
  const height = 120;
  const pad = 4;
  const top = Math.max(...points.map(([, v]) => v), 0);
  const max = top || 1;
  const first = points.length ? points[0][0] : 0;
  const span = points.length > 1 ? points[points.length - 1][0] - first : 1;
  const xy = points.map(([t, v]) => [
    pad + ((t - first) / (span || 1)) * (width - 2 * pad),
    height - pad - (v / max) * (height - 2 * pad),
  ]);
  const path = xy.map(([x, y], i) => `${i ? "L" : "M"}${x.toFixed(1)},${y.toFixed(1)}`).join(" ");
  const last = points.length ? points[points.length - 1][1] : undefined;
  return h("figure", { class: `chart ${cssClass || ""}` },
    h("figcaption", {}, title, ": ", h("strong", {}, last === undefined ? "no report yet" : format(last)),
      h("span", { class: "muted" }, ` (max ${format(top)}${note})`)),
    h("svg:svg", { viewBox: `0 0 ${width} ${height}`, preserveAspectRatio: "none", role: "img", "aria-label": title },
      h("svg:line", { x1: 0, y1: height - pad, x2: width, y2: height - pad, class: "axis" }),
      points.length ? h("svg:path", { d: path, class: "line" }) : null));
}

/// A labelled form field.
export function field(label, input) {
  return h("label", { class: "field" }, h("span", {}, label), input);
}
