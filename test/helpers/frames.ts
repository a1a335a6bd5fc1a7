/**
 * Every frame the server sends in the end-to-end tests is checked against the JSON Schema
 * generated from the zod schemas (`protocolJsonSchema()`), server frames only: a frame the
 * schema does not describe fails the test run, so the schema cannot drift from the server.
 */
import Ajv2020 from 'ajv/dist/2020';
import { ServerFrameSchemas, protocolJsonSchema } from '../../src/index';

const ajv = new Ajv2020({ strict: true, allErrors: true });
ajv.addSchema(protocolJsonSchema());
const validate = ajv.compile({ anyOf: Object.keys(ServerFrameSchemas).map((t) => ({ $ref: `urn:roomwire:protocol#/$defs/server.${t}` })) });

/** Frames that failed the check, for a test that wants to look (the run fails anyway). */
export const undescribedFrames: unknown[] = [];

/**
 * Check one frame the server sent. A frame the schema does not describe is reported as an
 * uncaught error (it fails the run, naming the frame) and kept in {@link undescribedFrames}.
 */
export function checkServerFrame(frame: unknown): void {
  if (validate(frame)) return;
  undescribedFrames.push(frame);
  const errors = ajv.errorsText(validate.errors);
  setImmediate(() => {
    throw new Error(`the server sent a frame protocol.schema.json does not describe: ${JSON.stringify(frame).slice(0, 500)} (${errors.slice(0, 500)})`);
  });
}
