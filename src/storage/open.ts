import type { Config, Location } from "../config/load";
import { ConfigError } from "../errors";
import type { StorageDriver } from "./driver";
import { LocalDriver } from "./local/driver";
import { binPath } from "../paths";

/** S3 drivers by endpoint, bucket and timeout: one connection pool (and write log) per process. */
const s3Drivers = new Map<string, StorageDriver>();

/**
 * The driver for a configured location: the local directory, `host:/path` over ssh, or
 * `s3://bucket/prefix`. The ssh and S3 drivers are loaded only for such a location, so
 * wal-archive/wal-restore stay lean otherwise. `timeout` (seconds) overrides ssh_timeout, and
 * caps s3_timeout (wal-restore passes restore_timeout).
 */
export function driverFor(loc: Location, config?: Config, opts: { timeout?: number } = {}): StorageDriver {
  if (loc.bucket !== undefined) return s3Driver(loc.bucket, config, opts.timeout);
  if (loc.host === undefined) return new LocalDriver();
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { SshDriver } = require("./ssh/driver") as typeof import("./ssh/driver");
  return new SshDriver({
    host: loc.host,
    remoteBin: config?.get("slave_wal_ctl") || binPath("wal-ctl"),
    ...(config?.has("slave_config") ? { remoteConfig: config.get("slave_config") } : {}),
    timeout: opts.timeout ?? (config ? config.float("ssh_timeout") : 10),
    compression: config?.bool("compression") ?? false,
    ...(config?.has("ssh_config") ? { sshConfig: config.path("ssh_config") } : {}),
    controlPersist: config ? config.float("ssh_control_persist") : 60,
  });
}

function s3Driver(bucket: string, config: Config | undefined, timeout: number | undefined): StorageDriver {
  /* eslint-disable @typescript-eslint/no-require-imports */
  const { S3Client } = require("./s3/client") as typeof import("./s3/client");
  const { S3Driver } = require("./s3/driver") as typeof import("./s3/driver");
  const { resolveCredentials } = require("./s3/credentials") as typeof import("./s3/credentials");
  /* eslint-enable @typescript-eslint/no-require-imports */
  const region = config?.get("s3_region") || "us-east-1";
  const raw = config?.get("s3_endpoint") || `https://s3.${region}.amazonaws.com`;
  let endpoint: URL;
  try {
    endpoint = new URL(raw);
    if (endpoint.protocol !== "http:" && endpoint.protocol !== "https:") throw new Error("not http(s)");
  } catch {
    throw new ConfigError(
      `${config ? config.where("s3_endpoint") : "s3_endpoint"} = ${JSON.stringify(raw)} is not an http(s) URL`,
      "write it as https://host[:port]",
    );
  }
  const style = config?.get("s3_uri_style") || (config?.has("s3_endpoint") ? "path" : "host");
  if (style !== "path" && style !== "host") {
    throw new ConfigError(
      `${config?.where("s3_uri_style") ?? "s3_uri_style"} must be path or host, not ${JSON.stringify(style)}`,
    );
  }
  const retries = config ? config.int("s3_retries") : 4;
  // Each attempt of a request is bounded as a whole by s3_timeout. wal-restore (and its
  // prefetcher) pass restore_timeout: PostgreSQL's startup process waits for it, so no attempt
  // may take longer (wal-restore also makes it the deadline of its whole call: deadline.ts).
  const s3Timeout = config ? config.float("s3_timeout") : 30;
  const timeoutS = timeout !== undefined ? Math.min(timeout, s3Timeout) : s3Timeout;
  const timeoutSetting = timeout !== undefined && timeout < s3Timeout ? "restore_timeout" : "s3_timeout";
  // s3_part_size and s3_retries are held to their ranges when the config is loaded (settings.ts).
  const partSize = config ? config.int("s3_part_size") : 16 << 20;
  const id = JSON.stringify([endpoint.href, bucket, style, region, timeoutS, retries, partSize, config?.file]);
  let d = s3Drivers.get(id);
  if (d === undefined) {
    let creds: ReturnType<typeof resolveCredentials> | undefined;
    d = new S3Driver({
      client: new S3Client({
        endpoint,
        region,
        bucket,
        pathStyle: style === "path",
        timeoutMs: Math.max(0.1, timeoutS) * 1000,
        timeoutSetting,
        paceBytes: partSize,
        retries,
        // Resolved on first use: a command that never reaches the bucket needs none.
        credentials: () => (creds ??= resolveCredentials(config)),
      }),
      partSize,
    });
    s3Drivers.set(id, d);
  }
  return d;
}
