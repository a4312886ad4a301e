import './base.css';
import './clusters.css';
import './workflows.css';
import './rucio-browser.css';
