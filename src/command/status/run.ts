import type { Context } from "../../context";
import { UsageError } from "../../errors";
import { formatPrometheus } from "../../monitor/prometheus";
import { gatherStatus } from "./gather";
import { statusText } from "./text";

/**
 * `wal-ctl CONFIG status` (either side): text, `--json` for a script, or `--prometheus` for
 * node_exporter's textfile collector. Always exits 0: what it cannot read, it reports.
 */
export async function status(ctx: Context): Promise<void> {
  const prometheus = ctx.options.get("prometheus") === "true";
  if (prometheus && ctx.json) throw new UsageError("--json and --prometheus cannot be used together", "pick one");
  const s = await gatherStatus(ctx);
  if (ctx.json) {
    ctx.out(JSON.stringify(s, null, 2));
    return;
  }
  if (prometheus) {
    ctx.out(formatPrometheus(s).replace(/\n$/, ""));
    return;
  }
  ctx.out(statusText(s));
}
