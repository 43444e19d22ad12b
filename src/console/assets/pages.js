// The console's pages. Each is `(params) => ({ view, refresh })`: `view` is built once (so
// forms keep what is typed into them) and `refresh` fills its live parts from the API; the app
// calls it on arrival and every poll. Every figure comes from an API call.
import { call, describeAll, listAll } from "./api.js";
import {
  actionButton, badge, bytes, errorBox, field, fill, h, lineChart, revisionOf, short, table, when,
} from "./ui.js";

const link = (hash, text) => h("a", { href: hash }, text);
const taskLink = (cluster, arn) => link(`#/c/${cluster}/tasks/${short(arn)}`, short(arn));
const serviceLink = (cluster, name) => link(`#/c/${cluster}/services/${name}`, name);
const familyLink = (arn) => {
  const [family] = revisionOf(arn).split(":");
  return link(`#/taskdefs/${family}`, revisionOf(arn));
};
const section = (id, title, ...children) => h("section", { id }, h("h2", {}, title), ...children);

// ---- clusters

export function clusters() {
  const list = h("div", { class: "live" });
  const out = h("div");
  const name = h("input", { name: "clusterName", placeholder: "name", required: true });
  const view = h("div", {},
    h("h1", {}, "Clusters"), list,
    section("create-cluster", "Create a cluster",
      h("form", { class: "inline" }, field("Name", name),
        actionButton("Create cluster", async () => {
          await call("CreateCluster", { clusterName: name.value.trim() });
          name.value = "";
          await refresh();
        }, out)), out));
  async function refresh() {
    const arns = await listAll("ListClusters", {}, "clusterArns");
    const found = arns.length
      ? (await call("DescribeClusters", { clusters: arns })).clusters || []
      : [];
    fill(list, table([
      ["Cluster", (c) => link(`#/c/${c.clusterName}/services`, c.clusterName)],
      ["Status", (c) => badge(c.status)],
      ["Services", (c) => c.activeServicesCount],
      ["Running tasks", (c) => c.runningTasksCount],
      ["Pending tasks", (c) => c.pendingTasksCount],
      ["Container instances", (c) => c.registeredContainerInstancesCount],
    ], found, "No clusters. Create one below; the default cluster comes back on the next start."));
  }
  return { view, refresh };
}

// ---- services

async function services(cluster) {
  const arns = await listAll("ListServices", { cluster }, "serviceArns");
  return describeAll("DescribeServices", "services", arns, { cluster }, "services", 10);
}

async function families() {
  return listAll("ListTaskDefinitionFamilies", { status: "ACTIVE" }, "families");
}

export function serviceList({ cluster }) {
  const list = h("div", { class: "live" });
  const out = h("div");
  const name = h("input", { name: "serviceName", placeholder: "web", required: true });
  const definition = h("select", { name: "taskDefinition" });
  const count = h("input", { name: "desiredCount", type: "number", min: 0, value: "1" });
  const breaker = h("input", { name: "circuitBreaker", type: "checkbox" });
  const create = h("section", { id: "create-service" }, h("h2", {}, "Create a service"),
    h("form", { class: "inline" },
      field("Name", name), field("Task definition", definition), field("Desired count", count),
      h("label", { class: "check" }, breaker, " circuit breaker with rollback"),
      actionButton("Create service", async () => {
        await call("CreateService", {
          cluster,
          serviceName: name.value.trim(),
          taskDefinition: definition.value,
          desiredCount: Number(count.value),
          ...(breaker.checked ? {
            deploymentConfiguration: { deploymentCircuitBreaker: { enable: true, rollback: true } },
          } : {}),
        });
        location.hash = `#/c/${cluster}/services/${name.value.trim()}`;
      }, out)), out);
  const view = h("div", {}, h("h1", {}, `Services in ${cluster}`), list, create);
  async function refresh() {
    const [found, known] = await Promise.all([services(cluster), families()]);
    const chosen = definition.value;
    fill(definition, known.map((f) => h("option", { value: f, selected: f === chosen }, f)));
    create.hidden = false;
    const empty = known.length
      ? "No services yet. Create one below: it keeps its desired count of tasks running."
      : h("span", {}, "No services, and no task definition to run. First ",
        link("#/taskdefs/new", "register a task definition"), ", then create a service here.");
    fill(list, table([
      ["Service", (s) => serviceLink(cluster, s.serviceName)],
      ["Status", (s) => badge(s.status)],
      ["Desired", (s) => s.desiredCount],
      ["Running", (s) => s.runningCount],
      ["Pending", (s) => s.pendingCount],
      ["Task definition", (s) => familyLink(s.taskDefinition)],
      ["Rollout", (s) => badge((s.deployments || []).find((d) => d.status === "PRIMARY")?.rolloutState)],
      ["Last event", (s) => h("span", { class: "muted" }, s.events?.[0]?.message || "")],
    ], found.filter((s) => s.status !== "INACTIVE"), empty));
    if (!known.length) create.hidden = true;
  }
  return { view, refresh };
}

export function serviceDetail({ cluster, name }) {
  const summary = h("div", { class: "live" });
  const deployments = h("div", { class: "live" });
  const timeline = h("div", { class: "live" });
  const tasks = h("div", { class: "live" });
  const events = h("div", { class: "live" });
  const out = h("div");
  const count = h("input", { name: "desiredCount", type: "number", min: 0 });
  const revision = h("select", { name: "revision" });
  let countTouched = false;
  count.addEventListener("input", () => { countTouched = true; });
  const update = (body) => call("UpdateService", { cluster, service: name, ...body });
  let deleting = false;
  const deleteButton = actionButton("Delete service", async () => {
    if (!deleting) {
      deleting = true;
      deleteButton.textContent = "Really delete (stops its tasks)?";
      return;
    }
    await call("DeleteService", { cluster, service: name, force: true });
    location.hash = `#/c/${cluster}/services`;
  }, out, { class: "danger" });
  const view = h("div", {},
    h("h1", {}, "Service ", name, " ", h("span", { class: "muted" }, `in ${cluster}`)),
    summary,
    h("form", { class: "inline controls" },
      field("Desired count", count),
      actionButton("Scale", async () => {
        await update({ desiredCount: Number(count.value) });
        countTouched = false;
        await refresh();
      }, out),
      field("Revision", revision),
      actionButton("Update to revision", async () => {
        await update({ taskDefinition: revision.value });
        await refresh();
      }, out),
      actionButton("Force new deployment", async () => {
        await update({ forceNewDeployment: true });
        await refresh();
      }, out),
      deleteButton),
    out,
    section("deployments", "Deployments", deployments),
    section("timeline", "Rollouts, circuit breaker and rollbacks", timeline),
    section("tasks", "Tasks", tasks),
    section("events", "Events", events));
  async function refresh() {
    const answer = await call("DescribeServices", { cluster, services: [name] });
    const service = answer.services?.[0];
    if (!service) {
      fill(summary, errorBox(answer.failures?.[0]
        ? `${answer.failures[0].reason}: ${answer.failures[0].arn}` : `no service ${name}`));
      return;
    }
    if (!countTouched && document.activeElement !== count) count.value = service.desiredCount;
    const breaker = service.deploymentConfiguration?.deploymentCircuitBreaker;
    fill(summary, h("dl", { class: "facts" },
      h("dt", {}, "Status"), h("dd", {}, badge(service.status)),
      h("dt", {}, "Desired"), h("dd", { id: "desired-count" }, service.desiredCount),
      h("dt", {}, "Running"), h("dd", { id: "running-count" }, service.runningCount),
      h("dt", {}, "Pending"), h("dd", { id: "pending-count" }, service.pendingCount),
      h("dt", {}, "Task definition"), h("dd", {}, familyLink(service.taskDefinition)),
      h("dt", {}, "Circuit breaker"), h("dd", {}, breaker?.enable
        ? `on${breaker.rollback ? ", rolls back" : ", no rollback"}` : "off")));
    fill(deployments, table([
      ["Deployment", (d) => d.id],
      ["Status", (d) => badge(d.status)],
      ["Task definition", (d) => familyLink(d.taskDefinition)],
      ["Desired", (d) => d.desiredCount],
      ["Running", (d) => d.runningCount],
      ["Pending", (d) => d.pendingCount],
      ["Failed", (d) => d.failedTasks],
      ["Rollout", (d) => h("span", {}, badge(d.rolloutState), " ", h("span", { class: "muted" }, d.rolloutStateReason || ""))],
      ["Updated", (d) => when(d.updatedAt)],
    ], service.deployments || [], "No deployments."));
    const family = revisionOf(service.taskDefinition).split(":")[0];
    const [revisions, history, taskArns] = await Promise.all([
      listAll("ListTaskDefinitions", { familyPrefix: family, status: "ACTIVE", sort: "DESC" }, "taskDefinitionArns"),
      call("ListServiceDeployments", { cluster, service: name }).then(async (listed) => {
        const arns = (listed.serviceDeployments || []).map((d) => d.serviceDeploymentArn);
        return arns.length
          ? (await call("DescribeServiceDeployments", { serviceDeploymentArns: arns.slice(0, 20) })).serviceDeployments || []
          : [];
      }),
      listAll("ListTasks", { cluster, serviceName: name }, "taskArns"),
    ]);
    const chosen = revision.value;
    const mine = revisions.filter((arn) => revisionOf(arn).split(":")[0] === family);
    fill(revision, mine.map((arn) => h("option", { value: arn, selected: arn === chosen }, revisionOf(arn))));
    history.sort((a, b) => (b.createdAt || 0) - (a.createdAt || 0));
    fill(timeline, history.length
      ? h("ol", { class: "timeline" }, history.map((d) => h("li", {},
        h("span", { class: "when" }, when(d.startedAt || d.createdAt)), " ",
        badge(d.status), " ",
        d.sourceServiceRevisions?.length
          ? `${d.sourceServiceRevisions.map((r) => short(r.arn)).join(", ")} → ` : "",
        short(d.targetServiceRevision?.arn), " ",
        d.deploymentCircuitBreaker
          ? h("span", { class: "muted" }, `circuit breaker: ${d.deploymentCircuitBreaker.failureCount ?? 0} of ${d.deploymentCircuitBreaker.threshold ?? "?"} failed (${d.deploymentCircuitBreaker.status || ""}) `)
          : "",
        d.rollback ? h("span", { class: "rollback" }, `rollback: ${d.rollback.reason || ""} `) : "",
        h("span", { class: "muted" }, d.statusReason || ""))))
      : h("div", { class: "empty" }, "No deployments recorded yet."));
    const running = taskArns.length
      ? await describeAll("DescribeTasks", "tasks", taskArns, { cluster }, "tasks", 100) : [];
    fill(tasks, taskTable(cluster, running, "No tasks running. The scheduler starts them as the desired count asks."));
    fill(events, (service.events || []).length
      ? h("ul", { class: "events" }, service.events.slice(0, 50).map((e) =>
        h("li", {}, h("span", { class: "when" }, when(e.createdAt)), " ", e.message)))
      : h("div", { class: "empty" }, "No events yet."));
  }
  return { view, refresh };
}

// ---- tasks

function taskTable(cluster, tasks, empty) {
  return table([
    ["Task", (t) => taskLink(cluster, t.taskArn)],
    ["Group", (t) => t.group || ""],
    ["Task definition", (t) => familyLink(t.taskDefinitionArn)],
    ["Last status", (t) => badge(t.lastStatus)],
    ["Desired", (t) => t.desiredStatus],
    ["Health", (t) => badge(t.healthStatus)],
    ["Stop code", (t) => t.stopCode || ""],
    ["Stopped reason", (t) => t.stoppedReason || ""],
    ["Started", (t) => when(t.startedAt)],
  ], tasks, empty);
}

export function taskList({ cluster }) {
  const running = h("div", { class: "live" });
  const stopped = h("div", { class: "live" });
  const view = h("div", {}, h("h1", {}, `Tasks in ${cluster}`),
    section("running", "Running", running), section("stopped", "Stopped (recently)", stopped));
  async function refresh() {
    const [up, down] = await Promise.all(["RUNNING", "STOPPED"].map((desiredStatus) =>
      listAll("ListTasks", { cluster, desiredStatus }, "taskArns")
        .then((arns) => describeAll("DescribeTasks", "tasks", arns, { cluster }, "tasks", 100))));
    up.sort((a, b) => (b.createdAt || 0) - (a.createdAt || 0));
    down.sort((a, b) => (b.stoppedAt || 0) - (a.stoppedAt || 0));
    fill(running, taskTable(cluster, up, h("span", {}, "No tasks running. ",
      link(`#/c/${cluster}/services`, "Create a service"), " to keep some running.")));
    fill(stopped, taskTable(cluster, down, "No stopped tasks."));
  }
  return { view, refresh };
}

/// How many stats readings a chart keeps (the agent reports every 2 s: two minutes).
const CHART_POINTS = 60;

export function taskDetail({ cluster, id }) {
  const summary = h("div", { class: "live" });
  const containers = h("div", { class: "live" });
  const charts = h("div", { class: "charts live" });
  const logs = h("pre", { class: "logs", id: "logs" });
  const logState = h("div", { class: "muted" });
  const out = h("div");
  const stop = actionButton("Stop task", async () => {
    await call("StopTask", { cluster, task: id, reason: "Stopped from the console" });
    await refresh();
  }, out, { class: "danger" });
  const view = h("div", {},
    h("h1", {}, "Task ", id, " ", h("span", { class: "muted" }, `in ${cluster}`)),
    summary, h("div", { class: "controls" }, stop), out,
    section("containers", "Containers", containers),
    section("charts", "CPU and memory", charts),
    section("task-logs", "Logs", logState, logs));
  let after = 0;
  let logsDone = false;
  const cpu = [];
  const memory = [];
  let lastRead;
  async function readLogs() {
    if (logsDone) return;
    for (;;) {
      const page = await call("WasmgateV1.GetTaskLogs", { cluster, task: id, after });
      const atBottom = logs.scrollTop + logs.clientHeight >= logs.scrollHeight - 4;
      if (page.truncated && after === 0) logs.append("… (older output dropped by the log cap)\n");
      for (const e of page.events || []) {
        logs.append(h("span", { class: e.stream === "stderr" ? "stderr" : "" },
          `${e.timestamp ? new Date(e.timestamp * 1000).toISOString().slice(11, 23) : ""} ${e.container} ${e.message.replace(/\n$/, "")}\n`));
      }
      if (atBottom) logs.scrollTop = logs.scrollHeight;
      const moved = page.next !== after;
      after = page.next;
      if (page.stopped && !moved) {
        logsDone = true;
        fill(logState, "The task stopped; this is all of its output.");
        return;
      }
      fill(logState, "Following the output live.");
      if (!moved || !(page.events || []).length) return;
    }
  }
  async function readStats(task) {
    if (task.lastStatus === "STOPPED") {
      if (!cpu.length) fill(charts, h("div", { class: "empty" }, "The task is not running: agents report the CPU and memory of running tasks."));
      return;
    }
    const answer = await call("WasmgateV1.GetTaskStats", { cluster });
    const mine = (answer.tasks || []).find((t) => short(t.taskArn) === id);
    // An HTTP task holds memory only while a request runs: its peak says more.
    const peak = (mine?.containers || []).reduce((n, c) => n + (c.memoryPeakBytes || 0), 0);
    if (mine?.read && mine.read !== lastRead) {
      lastRead = mine.read;
      const t = Number(mine.read);
      const sum = (key) => (mine.containers || []).reduce((n, c) => n + (c[key] || 0), 0);
      cpu.push([t, sum("cpuPercent")]);
      memory.push([t, sum("memoryBytes")]);
      if (cpu.length > CHART_POINTS) { cpu.shift(); memory.shift(); }
    }
    fill(charts,
      lineChart("CPU", cpu, (v) => `${v.toFixed(1)} %`, "cpu"),
      lineChart("Memory", memory, bytes, "memory",
        `${peak ? `, peak ${bytes(peak)}` : ""}${mine?.memoryLimitBytes ? `, limit ${bytes(mine.memoryLimitBytes)}` : ""}`));
  }
  async function refresh() {
    const answer = await call("DescribeTasks", { cluster, tasks: [id] });
    const task = answer.tasks?.[0];
    if (!task) {
      fill(summary, errorBox(answer.failures?.[0]
        ? `${answer.failures[0].reason}: ${answer.failures[0].arn}` : `no task ${id}`));
      return;
    }
    stop.hidden = task.lastStatus === "STOPPED" || task.desiredStatus === "STOPPED";
    fill(summary, h("dl", { class: "facts" },
      h("dt", {}, "Last status"), h("dd", { id: "task-status" }, badge(task.lastStatus)),
      h("dt", {}, "Desired status"), h("dd", {}, task.desiredStatus),
      h("dt", {}, "Health"), h("dd", {}, badge(task.healthStatus)),
      h("dt", {}, "Task definition"), h("dd", {}, familyLink(task.taskDefinitionArn)),
      h("dt", {}, "Group"), h("dd", {}, task.group?.startsWith("service:")
        ? serviceLink(cluster, task.group.slice(8)) : task.group || ""),
      h("dt", {}, "CPU / memory"), h("dd", {}, `${task.cpu || "?"} units / ${task.memory || "?"} MiB`),
      h("dt", {}, "Started"), h("dd", {}, when(task.startedAt)),
      task.stopCode ? [h("dt", {}, "Stop code"), h("dd", { id: "stop-code" }, task.stopCode)] : null,
      task.stoppedReason ? [h("dt", {}, "Stopped reason"), h("dd", { id: "stopped-reason" }, task.stoppedReason)] : null,
      task.stoppedAt ? [h("dt", {}, "Stopped"), h("dd", {}, when(task.stoppedAt))] : null));
    fill(containers, table([
      ["Container", (c) => c.name],
      ["Last status", (c) => badge(c.lastStatus)],
      ["Health", (c) => badge(c.healthStatus)],
      ["Exit code", (c) => c.exitCode ?? ""],
      ["Reason", (c) => c.reason || ""],
      ["Image", (c) => h("code", {}, c.image || "")],
    ], task.containers || [], "No containers."));
    await Promise.all([readLogs(), readStats(task)]);
  }
  return { view, refresh };
}

// ---- task definitions

const EXAMPLE = {
  family: "hello",
  memory: "64",
  containerDefinitions: [{ name: "main", image: "/path/to/program.wasm", essential: true }],
};

/// Members DescribeTaskDefinition answers that RegisterTaskDefinition does not take.
const OUTPUT_ONLY = ["taskDefinitionArn", "revision", "status", "requiresAttributes",
  "compatibilities", "registeredAt", "registeredBy", "deregisteredAt", "deleteRequestedAt"];

export function taskDefinitionList() {
  const list = h("div", { class: "live" });
  const view = h("div", {}, h("h1", {}, "Task definitions"),
    h("p", {}, link("#/taskdefs/new", "Register a task definition")), list);
  async function refresh() {
    const arns = await listAll("ListTaskDefinitions", { status: "ACTIVE", sort: "DESC" }, "taskDefinitionArns");
    const latest = new Map();
    for (const arn of arns) {
      const [family, rev] = revisionOf(arn).split(":");
      const seen = latest.get(family);
      latest.set(family, { family, latest: Math.max(seen?.latest || 0, Number(rev)), count: (seen?.count || 0) + 1 });
    }
    fill(list, table([
      ["Family", (f) => link(`#/taskdefs/${f.family}`, f.family)],
      ["Latest revision", (f) => f.latest],
      ["Active revisions", (f) => f.count],
    ], [...latest.values()].sort((a, b) => a.family.localeCompare(b.family)),
    h("span", {}, "No task definitions yet. ", link("#/taskdefs/new", "Register your first"),
      ": a family name, its memory and a container whose image is a .wasm file or an OCI reference.")));
  }
  return { view, refresh };
}

export function taskDefinitionFamily({ family }) {
  const list = h("div", { class: "live" });
  const json = h("pre", { class: "json" });
  const out = h("div");
  let shown;
  const view = h("div", {}, h("h1", {}, "Task definition ", family), list,
    section("revision", "Revision", out, json));
  async function show(arn) {
    fill(out);
    const answer = await call("DescribeTaskDefinition", { taskDefinition: arn });
    shown = answer.taskDefinition;
    const problem = h("div");
    fill(out, h("div", { class: "controls" },
      h("strong", {}, revisionOf(arn)), " ", badge(shown.status), " ",
      h("a", { href: `#/taskdefs/new?from=${encodeURIComponent(arn)}`, class: "button" }, "New revision from this"),
      shown.status === "ACTIVE" ? actionButton("Run a task of it", async () => {
        const cluster = document.getElementById("cluster")?.value || "default";
        const answer = await call("RunTask", { cluster, taskDefinition: arn });
        const task = answer.tasks?.[0];
        if (!task) throw new Error(answer.failures?.map((f) => `${f.reason}${f.detail ? `: ${f.detail}` : ""}`).join("; ") || "no task started");
        location.hash = `#/c/${cluster}/tasks/${short(task.taskArn)}`;
      }, problem) : null,
      shown.status === "ACTIVE" ? actionButton("Deregister", async () => {
        await call("DeregisterTaskDefinition", { taskDefinition: arn });
        await show(arn);
        await refresh();
      }, problem, { class: "danger" }) : null), problem);
    fill(json, JSON.stringify(shown, null, 2));
  }
  async function refresh() {
    const arns = await listAll("ListTaskDefinitions", { familyPrefix: family, sort: "DESC" }, "taskDefinitionArns");
    const mine = arns.filter((arn) => revisionOf(arn).split(":")[0] === family);
    const inactive = await listAll("ListTaskDefinitions", { familyPrefix: family, status: "INACTIVE", sort: "DESC" }, "taskDefinitionArns");
    const rows = [...mine.map((arn) => ({ arn, status: "ACTIVE" })),
      ...inactive.filter((arn) => revisionOf(arn).split(":")[0] === family).map((arn) => ({ arn, status: "INACTIVE" }))];
    fill(list, table([
      ["Revision", (r) => h("a", { href: "#", onclick: (e) => { e.preventDefault(); show(r.arn).catch((error) => fill(out, errorBox(error))); } }, revisionOf(r.arn))],
      ["Status", (r) => badge(r.status)],
    ], rows, h("span", {}, `No revisions of ${family}. `, link("#/taskdefs/new", "Register one"))));
    if (!shown && rows.length) await show(rows[0].arn);
  }
  return { view, refresh };
}

/// "Invalid task definition: a.b: rule; c: rule" → [{path, rule}].
export function fieldErrors(message) {
  const body = message.replace(/^Invalid task definition: /, "");
  return body.split("; ").map((part) => {
    const match = part.match(/^([A-Za-z][\w.[\]]*): (.*)$/s);
    return match ? { path: match[1], rule: match[2] } : { path: "", rule: part };
  });
}

/// Selects the member `path` names (its last key) in the editor, so the mistake is in view.
function selectPath(editor, path) {
  const key = path.split(".").pop().replace(/\[\d+\]$/, "");
  const at = editor.value.lastIndexOf(`"${key}"`);
  if (at < 0) return;
  editor.focus();
  editor.setSelectionRange(at, at + key.length + 2);
}

export function taskDefinitionEditor({ from }) {
  const editor = h("textarea", { id: "taskdef-editor", spellcheck: "false", rows: 22 });
  const errors = h("div", { id: "taskdef-errors" });
  const view = h("div", {}, h("h1", {}, "Register a task definition"),
    h("p", { class: "muted" }, "ECS's RegisterTaskDefinition JSON. The API checks it; what it refuses is listed below by field."),
    editor,
    h("div", { class: "controls" }, actionButton("Register", async () => {
      fill(errors);
      let body;
      try {
        body = JSON.parse(editor.value);
      } catch (error) {
        fill(errors, errorBox(`The editor does not hold JSON: ${error.message}`));
        return;
      }
      try {
        const answer = await call("RegisterTaskDefinition", body);
        const arn = answer.taskDefinition.taskDefinitionArn;
        location.hash = `#/taskdefs/${revisionOf(arn).split(":")[0]}`;
      } catch (error) {
        const listed = error.code === "ClientException" && /^Invalid task definition/.test(error.message)
          ? fieldErrors(error.message) : null;
        fill(errors, errorBox(error), listed ? h("ul", { class: "field-errors" }, listed.map((e) =>
          h("li", {}, e.path ? h("a", { href: "#", class: "path", onclick: (ev) => { ev.preventDefault(); selectPath(editor, e.path); } }, e.path) : "",
            e.path ? ": " : "", e.rule))) : "");
      }
    }, errors)), errors);
  let loaded = false;
  async function refresh() {
    if (loaded) return;
    loaded = true;
    let document = EXAMPLE;
    if (from) {
      const answer = await call("DescribeTaskDefinition", { taskDefinition: from });
      document = { ...answer.taskDefinition };
      for (const member of OUTPUT_ONLY) delete document[member];
    }
    editor.value = JSON.stringify(document, null, 2);
  }
  return { view, refresh, still: true };
}

// ---- container instances

export function instances({ cluster }) {
  const list = h("div", { class: "live" });
  const out = h("div");
  const view = h("div", {}, h("h1", {}, "Container instances"),
    h("p", { class: "muted" }, `The hosts of ${cluster} and the shared pool (Fargate's capacity) that agents registered.`),
    out, list);
  async function refresh() {
    const answer = await call("WasmgateV1.ListHosts");
    const hosts = (answer.Hosts || []).filter((host) => !host.Cluster || host.Cluster === cluster);
    const toggle = (host) => actionButton(host.Status === "DRAINING" ? "Activate" : "Drain", async () => {
      await call("UpdateContainerInstancesState", {
        cluster, containerInstances: [host.Arn], status: host.Status === "DRAINING" ? "ACTIVE" : "DRAINING",
      });
      await refresh();
    }, out);
    fill(list, table([
      ["Host", (host) => h("span", {}, host.Name, " ", h("span", { class: "muted" }, short(host.Arn)))],
      ["Cluster", (host) => host.Cluster || "(pool)"],
      ["Status", (host) => badge(host.Status)],
      ["Agent", (host) => badge(host.AgentConnected ? "CONNECTED" : "DISCONNECTED")],
      ["CPU units (remaining / registered)", (host) => `${host.CpuUnitsRemaining} / ${host.CpuUnits}`],
      ["Memory MiB (remaining / registered)", (host) => `${host.MemoryMiBRemaining} / ${host.MemoryMiB}`],
      ["Tasks (running, pending)", (host) => `${host.RunningTasks}, ${host.PendingTasks}`],
      ["", toggle],
    ], hosts, "No container instances. `wasmgate server` runs one itself; `wasmgate agent --join` adds more."));
  }
  return { view, refresh };
}

// ---- HTTP routes

/// The latency below which `fraction` of the requests between two readings fell, from their
/// cumulative histogram buckets (the bucket's upper bound, as Prometheus estimates do).
function quantile(before, now, fraction) {
  const counts = now.map((b, i) => ({ le: b.le, n: b.count - (before?.[i]?.count || 0) }));
  const total = counts.length ? counts[counts.length - 1].n : 0;
  if (!total) return null;
  const found = counts.find((b) => b.n >= fraction * total);
  return found ? found.le : null;
}

const ms = (seconds) => (seconds === null || seconds === undefined ? "–" : seconds < 1 ? `≤ ${(seconds * 1000).toPrecision(2)} ms` : `≤ ${seconds} s`);

export function routes() {
  const list = h("div", { class: "live" });
  const view = h("div", {}, h("h1", {}, "HTTP routes"),
    h("p", { class: "muted" }, "What the gateway serves, with its figures since the previous reading."), list);
  let previous = new Map();
  async function refresh() {
    const answer = await call("WasmgateV1.GetHttpRoutes");
    const now = Date.now() / 1000;
    const rows = (answer.routes || []).map((route) => {
      const key = `${route.cluster}/${route.serviceName}`;
      const before = previous.get(key);
      const f = route.figures;
      const seconds = before ? now - before.at : 0;
      const rate = (value, old) => (before && seconds > 0 ? Math.max(value - old, 0) / seconds : null);
      const errors = f.responses["5xx"];
      return {
        ...route, key, f,
        rps: rate(f.requests, before?.f.requests ?? 0),
        errorRate: rate(errors, before?.f.responses["5xx"] ?? 0),
        // Over the requests since the previous reading; with none, over all since the start.
        window: Boolean(before && f.requests > before.f.requests),
        p50: quantile(before && f.requests > before.f.requests ? before.f.durationBuckets : null, f.durationBuckets, 0.5),
        p99: quantile(before && f.requests > before.f.requests ? before.f.durationBuckets : null, f.durationBuckets, 0.99),
      };
    });
    previous = new Map(rows.map((r) => [r.key, { at: now, f: r.f }]));
    const url = (r) => answer.gateway ? `${answer.gateway}${r.path || "/"}` : null;
    fill(list, table([
      ["Service", (r) => serviceLink(r.cluster, r.serviceName)],
      ["Route", (r) => h("span", {}, r.host ? `host ${r.host} ` : "", r.path ? `path ${r.path}` : "")],
      ["Open", (r) => url(r) && !r.host ? h("a", { href: url(r), target: "_blank", rel: "noopener" }, url(r)) : ""],
      ["Serving tasks", (r) => r.servingTasks],
      ["Requests/s", (r) => h("span", { class: "rps" }, r.rps === null ? "…" : r.rps.toFixed(1))],
      ["Latency p50 / p99", (r) => h("span", {}, `${ms(r.p50)} / ${ms(r.p99)}`,
        r.p50 !== null && !r.window ? h("span", { class: "muted" }, " since start") : "")],
      ["5xx/s", (r) => (r.errorRate === null ? "…" : r.errorRate.toFixed(1))],
      ["Requests (2xx, 4xx, 5xx)", (r) => h("span", { class: "totals" }, `${r.f.requests} (${r.f.responses["2xx"]}, ${r.f.responses["4xx"]}, ${r.f.responses["5xx"]})`)],
    ], rows, h("span", {}, "No HTTP routes. A container with the label ", h("code", {}, "wasmgate.http.path"),
      " (e.g. \"/hello\") in its task definition is routed once a service runs it.")));
  }
  return { view, refresh };
}
