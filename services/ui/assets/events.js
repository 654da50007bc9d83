// powernode dashboard — the events page: live tail, pause, filters.
"use strict";
