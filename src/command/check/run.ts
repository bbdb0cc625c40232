import type { Context } from "../../context";
import { ExitCode, type ExitCodeValue } from "../../errors";

/** `wal-ctl CONFIG check`: placeholder until the checks land (this session). */
export async function check(ctx: Context): Promise<ExitCodeValue> {
  ctx.out("check: not yet");
  return ExitCode.INTERNAL;
}
