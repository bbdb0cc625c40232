/**
 * Where S3 credentials come from, in this order: the config file (`s3_access_key`,
 * `s3_secret_key`, `s3_session_token`; the file must then be private, mode 0600 or stricter,
 * like pgpass), the environment (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
 * `AWS_SESSION_TOKEN`), then the shared credentials file (`AWS_SHARED_CREDENTIALS_FILE`, else
 * `~/.aws/credentials`; profile `s3_profile`, else `AWS_PROFILE`, else `default`). The config
 * file wins because it names this job's repository explicitly; the environment of an
 * archive_command is PostgreSQL's, which a DBA rarely means to feed a bucket key through.
 * The secret is never put into a message.
 */
import { readFileSync, statSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import type { Config } from "../../config/load";
import { parseIni } from "../../config/ini";
import { ConfigError } from "../../errors";

export interface Credentials {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken?: string;
  /** Where they came from, for messages ("the config file", "the environment", "~/.aws/credentials [p]"). */
  source: string;
}

/** The credentials for `config`'s S3 repository; a ConfigError when none are found. */
export function resolveCredentials(config: Config | undefined, env: NodeJS.ProcessEnv = process.env): Credentials {
  if (config?.has("s3_secret_key") || config?.has("s3_access_key")) {
    if (!config.has("s3_access_key") || !config.has("s3_secret_key")) {
      const missing = config.has("s3_access_key") ? "s3_secret_key" : "s3_access_key";
      throw new ConfigError(
        `${config.where(missing)} is missing: the other half of the S3 key pair is set`,
        "set both, or neither (then the environment or ~/.aws/credentials is used)",
      );
    }
    if (config.has("s3_secret_key")) requirePrivate(config.file, "s3_secret_key");
    const token = config.get("s3_session_token");
    return {
      accessKeyId: config.get("s3_access_key") ?? "",
      secretAccessKey: config.get("s3_secret_key") ?? "",
      ...(token ? { sessionToken: token } : {}),
      source: config.file,
    };
  }
  if (env.AWS_ACCESS_KEY_ID && env.AWS_SECRET_ACCESS_KEY) {
    return {
      accessKeyId: env.AWS_ACCESS_KEY_ID,
      secretAccessKey: env.AWS_SECRET_ACCESS_KEY,
      ...(env.AWS_SESSION_TOKEN ? { sessionToken: env.AWS_SESSION_TOKEN } : {}),
      source: "the environment (AWS_ACCESS_KEY_ID)",
    };
  }
  const file = env.AWS_SHARED_CREDENTIALS_FILE || join(env.HOME || homedir(), ".aws", "credentials");
  const profile = config?.get("s3_profile") || env.AWS_PROFILE || "default";
  let text: string | undefined;
  try {
    text = readFileSync(file, "utf8");
  } catch {
    text = undefined;
  }
  if (text !== undefined) {
    let section;
    try {
      section = parseIni(text).sections.find((s) => s.name === profile);
    } catch (err) {
      throw new ConfigError(`${file} cannot be parsed: ${(err as Error).message}`, "fix the shared credentials file");
    }
    const id = section?.values.get("aws_access_key_id");
    const secret = section?.values.get("aws_secret_access_key");
    if (id && secret) {
      const token = section?.values.get("aws_session_token");
      return {
        accessKeyId: id,
        secretAccessKey: secret,
        ...(token ? { sessionToken: token } : {}),
        source: `${file} [${profile}]`,
      };
    }
  }
  throw new ConfigError(
    `no S3 credentials: not in ${config ? config.file : "the config"} (s3_access_key/s3_secret_key), not in the environment (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY), not in ${file} [${profile}]`,
    "give the key pair in one of those places (the config file must then be mode 0600)",
  );
}

/** A secret in a file others can read is refused (pgpass's rule). */
function requirePrivate(file: string, key: string): void {
  let mode: number;
  try {
    mode = statSync(file).mode;
  } catch {
    return; // the config was read a moment ago; a vanished file fails elsewhere with its name
  }
  if ((mode & 0o077) !== 0) {
    throw new ConfigError(
      `${file} holds ${key} but other users may read it (mode ${(mode & 0o777).toString(8)})`,
      `chmod 600 ${file}, or move the key pair to ~/.aws/credentials or the environment`,
    );
  }
}
