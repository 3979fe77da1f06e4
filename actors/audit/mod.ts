/**
 * The audit trail: the audit event (`event.ts`), its writer to the audit topic
 * (`writer.ts`), the uploader to S3 / Ceph RGW (`uploader.ts`), the object store
 * (`store.ts`) and the report over stored audit objects (`report.ts`).
 *
 * @module
 */
export * from "./event.ts";
export * from "./report.ts";
export * from "./store.ts";
export * from "./uploader.ts";
export * from "./writer.ts";
