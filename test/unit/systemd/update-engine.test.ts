import { describe, expect, it } from "vitest";
import { parseUpdateStatus, UPDATE_OPERATIONS } from "../../../src/systemd/update-engine.ts";

describe("parseUpdateStatus", () => {
  it("reads the five GetStatus/StatusUpdate values into named fields", () => {
    expect(parseUpdateStatus([1_700_000_000, 1, "UPDATE_STATUS_UPDATED_NEED_REBOOT", "4650.0.0", 123_456])).toEqual({
      lastCheckedTime: 1_700_000_000,
      progress: 1,
      operation: "UPDATE_STATUS_UPDATED_NEED_REBOOT",
      newVersion: "4650.0.0",
      newSize: 123_456,
    });
  });

  it.each(UPDATE_OPERATIONS)("accepts %s", (operation) => {
    expect(parseUpdateStatus([0, 0, operation, "", 0])?.operation).toBe(operation);
  });

  it.each([
    [[0, 0, "UPDATE_STATUS_SOMETHING_NEW", "", 0]],
    [[0, 0, "UPDATE_STATUS_IDLE", "", "0"]],
    [["0", 0, "UPDATE_STATUS_IDLE", "", 0]],
    [[0, 0, "UPDATE_STATUS_IDLE"]],
    [[]],
  ])("rejects %j", (values) => {
    expect(parseUpdateStatus(values)).toBeNull();
  });
});
