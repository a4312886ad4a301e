import './base.css';
import './clusters.css';
import './workflows.css';
