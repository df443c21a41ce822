package agent

import "github.com/vipd/vipd/internal/sched"

// setNice runs the test process at the agent's scheduling priority (needs CAP_SYS_NICE, as the agent does).
func setNice(nice int) error { return sched.SetNice(nice) }
