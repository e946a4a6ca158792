"""MetaSchedule tuning and hand-written schedules (imported as ``mnv3compile.schedules``)."""
