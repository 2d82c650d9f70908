// Fills the Redis panel from the health route, on load and every ten seconds
// after, so that rendering a page never waits on a PING and an INFO, and a
// slow or failing Redis shows up here instead of slowing every page.
(function () {
  const panel = document.getElementById("redis-panel");
  if (!panel || !panel.dataset.healthUrl) return;
  const REFRESH_MS = 10000;
  // A server that hangs must not freeze the panel on its last good state.
  const TIMEOUT_MS = 5000;
  const MIB = 1024 * 1024;

  function field(name) {
    return document.getElementById(`redis-${name}`);
  }

  function mebibytes(bytes) {
    return (bytes / MIB).toFixed(1);
  }

  function memory(report) {
    if (!report.used_memory) return "\u2013";  // the embedded server and Cluster do not say
    const limit = report.maxmemory ? ` of ${mebibytes(report.maxmemory)}` : "";
    return `${mebibytes(report.used_memory)}${limit} MiB`;
  }

  function show(ok, report) {
    const status = field("status");
    status.textContent = ok ? "Connected" : "Unavailable";
    status.classList.toggle("ok", ok);
    status.classList.toggle("down", !ok);
    field("server").textContent = report.server_version || "\u2013";
    field("latency").textContent =
      typeof report.latency_ms === "number" ? `${report.latency_ms.toFixed(2)} ms` : "\u2013";
    field("memory").textContent = memory(report);
    const error = field("error");
    error.textContent = report.error || "";
    error.hidden = !report.error;
  }

  async function refresh() {
    try {
      const response = await fetch(panel.dataset.healthUrl, {
        cache: "no-store", signal: AbortSignal.timeout(TIMEOUT_MS),
      });
      const report = await response.json();
      show(response.ok && report.ok === true, report);
    } catch {
      show(false, { error: "The health check did not answer." });
    }
    setTimeout(refresh, REFRESH_MS);
  }

  refresh();
})();
