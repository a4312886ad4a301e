// The script of the Web Worker that lays DAGs out: ELK's own worker build, which answers the
// messages of elkjs's API (elk-api.js) on the page. Compiling the large module and running the
// layout off the page's main thread keep the page responsive while a DAG opens or grows.
import 'elkjs/lib/elk-worker.min.js';
