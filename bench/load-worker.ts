/**
 * A load-generator process of `npm run bench`, forked by the runner (`bench/run.ts`): it runs the jobs
 * the runner sends over IPC (several at once when asked) and answers with their results.
 */
import type { FromWorker, ToWorker } from "./jobs.js";
import {
  type RunningWatch,
  runClosedLoop,
  runCreateMany,
  runDecideAll,
  runOpenLoopCreate,
  startWatch,
} from "./load-jobs.js";

if (process.send === undefined) {
  process.stderr.write("bench/load-worker.ts is started by bench/run.ts (npm run bench), not directly\n");
  process.exit(2);
}

const send = (message: FromWorker) => {
  process.send?.(message);
};
const watches = new Map<number, RunningWatch>();

function run(jobId: number, work: Promise<unknown>): void {
  work.then(
    (result) => send({ type: "result", jobId, result }),
    (err: unknown) =>
      send({
        type: "failed",
        jobId,
        message: err instanceof Error ? (err.stack ?? err.message) : String(err),
      }),
  );
}

process.on("message", (message: ToWorker) => {
  if (message.type === "stop") {
    watches.get(message.jobId)?.stop();
    return;
  }
  const { jobId, target, job } = message;
  switch (job.kind) {
    case "closed-loop":
      run(jobId, runClosedLoop(target, job));
      break;
    case "open-loop-create":
      run(jobId, runOpenLoopCreate(target, job));
      break;
    case "create-many":
      run(jobId, runCreateMany(target, job));
      break;
    case "decide-all":
      run(jobId, runDecideAll(target, job));
      break;
    case "watch": {
      const watch = startWatch(target, job);
      watches.set(jobId, watch);
      watch.ready.then(
        (opened) => send({ type: "ready", jobId, opened }),
        () => {},
      );
      run(
        jobId,
        watch.ready
          .then(
            () => watch.result,
            async (err: unknown) => {
              await watch.result;
              throw err;
            },
          )
          .finally(() => watches.delete(jobId)),
      );
      break;
    }
  }
});

// The runner going away ends this process too.
process.on("disconnect", () => process.exit(0));
send({ type: "up" });
