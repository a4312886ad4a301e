import './base.css';
import './workflows.css';
