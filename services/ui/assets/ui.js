// powernode dashboard — live updates over /ui/stream (server-sent events).
// Pages read and work without this script.
"use strict";
