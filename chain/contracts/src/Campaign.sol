// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {IIssuer} from "./Issuer.sol";

/// @title ICampaign
/// @notice What the InvestService needs from a campaign.
interface ICampaign {
    function stablecoin() external view returns (address);
    function issuer() external view returns (address);
    function investForBeneficiary(address spender, address beneficiary, uint256 amount) external;
}

/// @title Campaign
/// @notice A minimal crowdfunding campaign: investors send stablecoin (pulled with transferFrom,
///         so the spender must have approved this campaign) and are credited as beneficiaries.
///         Beneficiaries must be approved on the issuer.
contract Campaign is ICampaign, Ownable {
    using SafeERC20 for IERC20;

    address public immutable override stablecoin;
    address public immutable override issuer;
    /// @notice The service trusted to invest on behalf of spenders (see investForBeneficiary).
    address public investService;
    uint256 public totalFundsRaised;
    mapping(address => uint256) private claimed;

    event Invest(address indexed spender, address indexed beneficiary, uint256 amount);
    event InvestServiceChanged(address indexed previousService, address indexed newService);

    constructor(address stablecoin_, address issuer_) Ownable(msg.sender) {
        require(stablecoin_ != address(0), "Campaign: invalid stablecoin address");
        require(issuer_ != address(0), "Campaign: invalid issuer address");
        stablecoin = stablecoin_;
        issuer = issuer_;
    }

    function claimedAmount(address investor) external view returns (uint256) {
        return claimed[investor];
    }

    function setInvestService(address newInvestService) external onlyOwner {
        address previous = investService;
        investService = newInvestService;
        emit InvestServiceChanged(previous, newInvestService);
    }

    function invest(uint256 amount) external {
        _invest(msg.sender, msg.sender, amount);
    }

    /// @notice Pulls `amount` from `spender` and credits `beneficiary`. Callable by the spender
    ///         itself or by the trusted invest service.
    function investForBeneficiary(address spender, address beneficiary, uint256 amount) external override {
        require(
            msg.sender == spender || (msg.sender == investService && investService != address(0)),
            "Campaign: caller may not invest for spender"
        );
        _invest(spender, beneficiary, amount);
    }

    function _invest(address spender, address beneficiary, uint256 amount) private {
        require(amount > 0, "Campaign: amount must be positive");
        require(IIssuer(issuer).isWalletApproved(beneficiary), "Campaign: beneficiary wallet not approved");
        claimed[beneficiary] += amount;
        totalFundsRaised += amount;
        IERC20(stablecoin).safeTransferFrom(spender, address(this), amount);
        emit Invest(spender, beneficiary, amount);
    }
}
