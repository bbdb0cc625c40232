/**
 * Constant memory for bodies received from a pipe. Node reads a pipe into a new Buffer each
 * time (64 KiB), and the frame decoder makes 1 MiB payloads of them: all garbage a moment later,
 * but V8 frees a Buffer's memory only when a collection finds it dead, and it starts one for
 * such external memory only once about 64 MB more of it is held (V8's external allocation soft
 * limit). A 1 GiB segment read over ssh then peaks at ~90 MB. Asking for a young-generation
 * collection every 4 MB received keeps it near the size of the buffers in flight (measured: a
 * 1 GiB pipe read peaks at 82 MB without, 56 MB with; every 16 MB is not enough). (Local reads
 * need none of this: they fill caller-owned buffers, `ReadStream.readInto`.)
 */
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";

type Gc = (opts?: { type?: "minor" | "major" }) => void;

let gc: Gc | null | undefined;

/** A quick (young-generation) garbage collection; nothing when the runtime does not allow it. */
export function releaseGarbage(): void {
  if (gc === undefined) {
    try {
      // The documented way to reach gc() without starting node with --expose-gc: a new context
      // created after the flag is set has it.
      setFlagsFromString("--expose-gc");
      gc = runInNewContext("gc") as Gc;
    } catch {
      gc = null;
    }
  }
  gc?.({ type: "minor" });
}
