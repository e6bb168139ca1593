-- DriftReport's serial_correlation and calibrated (issue 15, point 3): the baseline's serial dependence the
-- alarm is calibrated for, and false when it is too strong to calibrate (the series is reported, never alarmed).
-- Rows written before keep the defaults the Avro schema gives old records.

ALTER TABLE drift_reports ADD COLUMN IF NOT EXISTS serial_correlation Float64 DEFAULT 0;

ALTER TABLE drift_reports ADD COLUMN IF NOT EXISTS calibrated Bool DEFAULT true;
