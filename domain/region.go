package domain

import "sort"

// regionZones gives each region the product knows its time zone: the
// zone a backup instance of the region counts its days in (and takes its
// daily full backup at 00:00 of) unless it is enabled with another. The
// names are the cloud's region IDs (cn-hangzhou, eu-central-1, ...).
var regionZones = map[string]string{
	// Mainland China.
	"cn-qingdao":     "Asia/Shanghai",
	"cn-beijing":     "Asia/Shanghai",
	"cn-zhangjiakou": "Asia/Shanghai",
	"cn-huhehaote":   "Asia/Shanghai",
	"cn-wulanchabu":  "Asia/Shanghai",
	"cn-hangzhou":    "Asia/Shanghai",
	"cn-shanghai":    "Asia/Shanghai",
	"cn-nanjing":     "Asia/Shanghai",
	"cn-fuzhou":      "Asia/Shanghai",
	"cn-shenzhen":    "Asia/Shanghai",
	"cn-heyuan":      "Asia/Shanghai",
	"cn-guangzhou":   "Asia/Shanghai",
	"cn-chengdu":     "Asia/Shanghai",
	"cn-wuhan-lr":    "Asia/Shanghai",
	"cn-hongkong":    "Asia/Hong_Kong",
	// Asia Pacific.
	"ap-northeast-1": "Asia/Tokyo",
	"ap-northeast-2": "Asia/Seoul",
	"ap-southeast-1": "Asia/Singapore",
	"ap-southeast-2": "Australia/Sydney",
	"ap-southeast-3": "Asia/Kuala_Lumpur",
	"ap-southeast-5": "Asia/Jakarta",
	"ap-southeast-6": "Asia/Manila",
	"ap-southeast-7": "Asia/Bangkok",
	"ap-south-1":     "Asia/Kolkata",
	// Europe, the Americas, the Middle East.
	"eu-central-1": "Europe/Berlin",
	"eu-west-1":    "Europe/London",
	"us-east-1":    "America/New_York",
	"us-west-1":    "America/Los_Angeles",
	"na-south-1":   "America/Mexico_City",
	"me-east-1":    "Asia/Dubai",
	"me-central-1": "Asia/Riyadh",
}

// RegionTimeZone is the IANA time zone of a region: its own for a region
// the product knows (cn-hangzhou: Asia/Shanghai), UTC for any other.
func RegionTimeZone(region string) string {
	if z, ok := regionZones[region]; ok {
		return z
	}
	return "UTC"
}

// KnownRegions lists the regions that have a time zone of their own, in
// order.
func KnownRegions() []string {
	out := make([]string, 0, len(regionZones))
	for r := range regionZones {
		out = append(out, r)
	}
	sort.Strings(out)
	return out
}
