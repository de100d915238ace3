// Steady load with long-lived streams while the operator reloads the configuration and upgrades the binary.
//
// Run it through scripts/reload-under-load.sh, which starts the simulator and the gateway, runs this script,
// and meanwhile reloads the YAML 50 times (file edits saved by rename, SIGHUP, POST /admin/reload) and
// upgrades the binary 3 times (`levitate upgrade`). The thresholds are the claim: no failed request, and every
// stream ends with its finish_reason and `data: [DONE]` (a stream cut by a reload or an upgrade would not).
//
//   BASE_URL   gateway URL (default http://127.0.0.1:18045)
//   API_KEY    client key (default load-key)
//   DURATION   how long the load lasts (default 150s)
//   STREAMS    concurrent long-lived streams (default 8)
//   RATE       short non-streaming requests per second (default 10)
//   WORDS      filler words per streamed answer: its length (default 300)

import http from 'k6/http';
import { check } from 'k6';
import { Counter } from 'k6/metrics';

const BASE_URL = __ENV.BASE_URL || 'http://127.0.0.1:18045';
const API_KEY = __ENV.API_KEY || 'load-key';
const DURATION = __ENV.DURATION || '150s';
const STREAMS = parseInt(__ENV.STREAMS || '8', 10);
const RATE = parseInt(__ENV.RATE || '10', 10);
const WORDS = parseInt(__ENV.WORDS || '300', 10);

const streamsCut = new Counter('streams_cut');
const streamsCompleted = new Counter('streams_completed');

export const options = {
  scenarios: {
    streams: {
      executor: 'constant-vus',
      vus: STREAMS,
      duration: DURATION,
      exec: 'longStream',
    },
    short: {
      executor: 'constant-arrival-rate',
      rate: RATE,
      timeUnit: '1s',
      duration: DURATION,
      preAllocatedVUs: RATE * 2,
      maxVUs: RATE * 10,
      exec: 'shortRequest',
    },
  },
  thresholds: {
    http_req_failed: ['rate==0'],
    checks: ['rate==1'],
    streams_cut: ['count==0'],
    streams_completed: ['count>0'],
  },
  summaryTrendStats: ['avg', 'p(50)', 'p(95)', 'p(99)', 'max'],
};

const headers = { 'Content-Type': 'application/json', Authorization: `Bearer ${API_KEY}` };

export function longStream() {
  const body = JSON.stringify({
    model: 'gpt-4o',
    stream: true,
    messages: [{ role: 'user', content: `a long answer please [sim:text] [sim:words=${WORDS}] vu ${__VU} it ${__ITER}` }],
  });
  const r = http.post(`${BASE_URL}/v1/chat/completions`, body, { headers, timeout: '120s', tags: { kind: 'stream' } });
  const text = r.body || '';
  const complete = text.trimEnd().endsWith('data: [DONE]') && text.includes('"finish_reason":"stop"');
  check(r, {
    'stream status 200': (res) => res.status === 200,
    'stream ended with stop and [DONE]': () => complete,
  });
  if (r.status === 200 && complete) {
    streamsCompleted.add(1);
  } else {
    streamsCut.add(1);
    console.error(`stream failed: status ${r.status} error ${r.error} (code ${r.error_code}), ${text.length} bytes`);
  }
}

export function shortRequest() {
  const body = JSON.stringify({
    model: 'gpt-4o',
    messages: [{ role: 'user', content: `short [sim:text] [sim:words=5] vu ${__VU} it ${__ITER}` }],
  });
  const r = http.post(`${BASE_URL}/v1/chat/completions`, body, { headers, timeout: '60s', tags: { kind: 'short' } });
  if (r.status !== 200) {
    console.error(`short request failed: status ${r.status} error ${r.error} (code ${r.error_code})`);
  }
  check(r, {
    'short status 200': (res) => res.status === 200,
    'short has an answer': (res) => res.status === 200 && res.json('choices.0.message.content').length > 0,
  });
}
